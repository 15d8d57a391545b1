"""``python -m benchmarks.mapfit_progress``: the reference map's fit, how long it stays silent.

Fits the built-in reference's map (its 8,785 cells in the analysis space, the builder's
settings) twice, each in a fresh interpreter as the Train page's first fit in a new server
process (numba compiles what its on-disk cache lacks):

* **before**: ``scembed_core/mapfit.py`` as it was at commit 8e7c7d6 (read with ``git
  show``, the same-run baseline): umap-learn imported, then it finds the neighbours itself
  (pynndescent's random-projection forest and NN-descent), one message until the first
  layout epoch;
* **after**: the engine's default (exact cosine neighbours in chunks, handed over as
  ``precomputed_knn``, every step reported).

For each: wall time of the fit, progress messages before the first layout epoch, the
longest time without a new message and after which message, and the map's quality (share
of cells whose 15 nearest cells on the map mostly share their cell type: both maps should
be as good). Prints a Markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

#: The engine's commit before the change (its mapfit.py is the same-run baseline).
BASELINE = "8e7c7d6"

_CHILD = r"""
import json, sys, time
import numpy as np
started = time.perf_counter()
marks = []
def report(fraction, message):
    marks.append((time.perf_counter() - started, fraction, message))
if sys.argv[1] == "before":
    import importlib.util
    spec = importlib.util.spec_from_file_location("scembed_core._mapfit_before", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fit_reference_umap = module.fit_reference_umap
else:
    from scembed_core.mapfit import fit_reference_umap
from scembed_core.reference import load_default_reference
reference = load_default_reference()
space = np.asarray(reference.cell_space, dtype=np.float32)
labels = reference.cells.obs["cell_type"].astype(str).to_numpy()
started = time.perf_counter()
report(0.0, "stage start")  # the app shows the stage's title from here
model = fit_reference_umap(space, progress=report)
total = time.perf_counter() - started
from sklearn.neighbors import NearestNeighbors
coords = model.embedding_
_, idx = NearestNeighbors(n_neighbors=16).fit(coords).kneighbors(coords)
same = (labels[idx[:, 1:]] == labels[:, None]).mean(axis=1) > 0.5
print(json.dumps({"total": total, "marks": marks, "vote": float(same.mean()),
                  "n": int(len(space))}))
"""


def run(mode: str, before: Path) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(before)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    marks = result["marks"]
    gaps = [(b[0] - a[0], a[2]) for a, b in zip(marks, marks[1:], strict=False)]
    result["gap"], result["gap_after"] = max(gaps)
    first = next(i for i, m in enumerate(marks) if "layout epoch" in m[2])
    result["before_layout"] = first
    result["first_epoch_at"] = marks[first][0]
    return result


def main() -> None:
    load = os.getloadavg()
    root = Path(__file__).resolve().parents[1]
    old = subprocess.run(
        ["git", "show", f"{BASELINE}:scembed_core/mapfit.py"],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "mapfit_before.py"
        before.write_text(old)
        rows = {mode: run(mode, before) for mode in ("before", "after")}
    print("## `python -m benchmarks.mapfit_progress`: the map's fit reports every step\n")
    print("```bash\nnice -n 10 .venv/bin/python -m benchmarks.mapfit_progress\n```\n")
    print(
        "| path | fit, wall | messages before the first layout epoch | first layout epoch at "
        "| longest silence (after which message) | map: 15-NN label vote |"
    )
    print("|:---|---:|---:|---:|:---|---:|")
    names = {
        "before": f"before ({BASELINE}): umap-learn's own neighbours (pynndescent)",
        "after": "after: exact neighbours in chunks, `precomputed_knn`",
    }
    for mode, row in rows.items():
        print(
            f"| {names[mode]} | {row['total']:.1f} s | {row['before_layout']} | "
            f"{row['first_epoch_at']:.1f} s | **{row['gap']:.1f} s** ({row['gap_after']}) | "
            f"{row['vote']:.3f} |"
        )
    print(
        f"\n- {rows['after']['n']:,} reference cells, fresh interpreter per path; silences "
        "counted from the stage's start (the app shows the stage title from then). Load average "
        f"at start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (shared 2-core machine).\n"
        f"- {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs."
    )


if __name__ == "__main__":
    main()
