"""``python -m benchmarks.labels_build``: a reference build's label stages, before and after.

Times the two label stages of :func:`scembed_core.train.build_reference` on their own:
the label classifier with its held-out calibration (``fit_label_model``) and the Unknown
rule's leave-one-type-out calibration (``calibrate_trust``), each variant in a fresh
interpreter (import included, wall and CPU seconds, the load average before it).

The cells are built as ``benchmarks.mapfit_own``'s ``_BUILD`` builds them: the first
``n`` cells of ``../shared/data/granja2019_bmmc``, or, above its 10,335 cells, ``n`` cells
drawn with replacement (seed 0), each losing a random 20% of its open peaks, embedded with
the built-in model. The embedded cells, their regions and the reference's kNN index (built
as ``build_reference`` builds it; hnswlib reloads the same graph) are cached under
``/tmp/scembed_labels_build_<n>`` so reruns skip the embedding and the index.

``--base REV`` runs the same stages on the engine of git revision ``REV`` (exported
with ``git archive``, default ``7c9446c``) in the same run; ``--compare`` also compares the
classifier's held-out neighbours (a second index over the fit cells, as before, against
the reference's index with the held-out cells hidden) and the two variants' outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRANJA = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"

_PREPARE = r"""
import sys, json
import anndata as ad
import numpy as np
import scipy.sparse as sp
from scembed_core.reference import load_default_reference
from scembed_core.project import compute_coverage, embed_cells
from scembed_core.model import Whitening
from scembed_core.knn import build_cell_index
cache, n = sys.argv[1], int(sys.argv[2])
model = load_default_reference().model
cells = ad.read_h5ad(sys.argv[3])
if n <= cells.n_obs:
    cells = cells[:n].copy()
else:  # as benchmarks.mapfit_own's _BUILD
    rng = np.random.default_rng(0)
    cells = cells[np.sort(rng.choice(cells.n_obs, n))].copy()
    cells.obs_names_make_unique()
    cells.X.data[rng.random(cells.X.nnz) < 0.2] = 0
    cells.X.eliminate_zeros()
coverage = compute_coverage(cells, model)
embedding = embed_cells(coverage, model)
keep = np.isfinite(embedding).all(axis=1)
np.save(f"{cache}/embedding.npy", embedding[keep])
np.save(f"{cache}/labels.npy", cells.obs["cell_type"].to_numpy().astype(str)[keep])
sp.save_npz(f"{cache}/regions.npz", coverage.cell_regions[keep].tocsr())
whitening = Whitening.fit(embedding[keep], 20)
index = build_cell_index(whitening.transform(embedding[keep]))
index.save_index(f"{cache}/index.bin")
print(json.dumps({"n": int(keep.sum())}))
"""

_STAGES = r"""
import inspect, json, os, sys, time
wall0 = time.perf_counter()
import numpy as np
import scipy.sparse as sp
import anndata as ad
from scembed_core.reference import load_default_reference
from scembed_core.reference.core import Reference
from scembed_core.model import Whitening
from scembed_core.knn import load_cell_index
from scembed_core.labels.classifier import fit_label_model
from scembed_core.labels.loto import calibrate_trust
cache = sys.argv[1]
model = load_default_reference().model
embedding = np.load(f"{cache}/embedding.npy")
labels = np.load(f"{cache}/labels.npy", allow_pickle=False)
regions = sp.load_npz(f"{cache}/regions.npz").tocsr()
whitening = Whitening.fit(embedding, 20)
index = load_cell_index(f"{cache}/index.bin", whitening.matrix.shape[1], len(embedding))
setup = time.perf_counter() - wall0
load = os.getloadavg()
kwargs = {"index": index} if "index" in inspect.signature(fit_label_model).parameters else {}
steps = []
t, c = time.perf_counter(), time.process_time()
if len(sys.argv) > 3:  # the Unknown rule only, on a given classifier
    from scembed_core.labels.classifier import LabelModel, LabelModelParams
    given = np.load(sys.argv[3])
    classifier = LabelModel("cell_type", tuple(given["classes"]), LabelModelParams(),
                            *(given[key] for key in ("mean", "scale", "coef", "intercept")),
                            {}, {}, float(given["temperature"]))
else:
    classifier = fit_label_model(embedding, labels, whitening=whitening, label_key="cell_type",
                                 seed=0, progress=lambda f, m: steps.append(
                                     (round(time.perf_counter() - t, 2), m)), **kwargs)
fit_wall, fit_cpu = time.perf_counter() - t, time.process_time() - c
cells = ad.AnnData(obs={"cell_type": labels})
cells.obs_names = [str(i) for i in range(len(labels))]
cells.obsm["X_scembed"] = embedding
reference = Reference(model=model, cells=cells, manifest={"label_keys": ["cell_type"]},
                      index=index, whitening=whitening, label_model=classifier)
t, c = time.perf_counter(), time.process_time()
trust = calibrate_trust(reference, regions, seed=0)
trust_wall, trust_cpu = time.perf_counter() - t, time.process_time() - c
np.savez(sys.argv[2], mean=classifier.mean, scale=classifier.scale, coef=classifier.coef,
         intercept=classifier.intercept, temperature=classifier.temperature,
         classes=np.asarray(classifier.classes))
print(json.dumps({
    "load": load, "setup_s": setup, "n": len(labels), "fit_wall": fit_wall, "fit_cpu": fit_cpu,
    "trust_wall": trust_wall, "trust_cpu": trust_cpu, "steps": steps,
    "temperature": classifier.temperature, "ece": classifier.calibration.get("ece", 0.0),
    "accuracy": classifier.calibration.get("accuracy"), "info": classifier.info,
    "trust": trust}, default=float))
"""

_NEIGHBOURS = r"""
import json, sys
import numpy as np
from scembed_core.model import Whitening
from scembed_core.knn import build_cell_index, knn_query, load_cell_index, knn_query_hiding
from scembed_core.labels.softmax_fit import holdout_split as _holdout_split
cache = sys.argv[1]
embedding = np.load(f"{cache}/embedding.npy")
labels = np.load(f"{cache}/labels.npy", allow_pickle=False)
_, codes = np.unique(labels, return_inverse=True)
whitening = Whitening.fit(embedding, 20)
space = whitening.transform(embedding)
index = load_cell_index(f"{cache}/index.bin", space.shape[1], len(space))
fit_idx, held_idx = _holdout_split(codes, 0.2, 0)
old, _ = knn_query(build_cell_index(space[fit_idx], seed=0), space[held_idx], 15)
old = fit_idx[old]
new, _ = knn_query_hiding(index, space[held_idx], 15, held_idx)
same_set = np.mean([set(a) == set(b) for a, b in zip(old, new)])
overlap = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(old, new)])
print(json.dumps({"identical_lists": float(same_set), "mean_overlap": float(overlap),
                  "any_held_out": bool(np.isin(new, held_idx).any())}))
"""


def _child(code: str, pythonpath: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(pythonpath)}
    out = subprocess.run(
        ["nice", "-n", "10", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=pythonpath,  # python -c puts the working directory first on sys.path
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cache(n: int) -> Path:
    cache = Path(tempfile.gettempdir()) / f"scembed_labels_build_{n}"
    if not (cache / "index.bin").exists():
        cache.mkdir(exist_ok=True)
        _child(_PREPARE, ROOT, str(cache), str(n), str(GRANJA))
    return cache


def _export(rev: str) -> Path:
    folder = Path(tempfile.gettempdir()) / f"scembed_labels_build_base_{rev}"
    if not (folder / "scembed_core").exists():
        folder.mkdir(exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", rev, "scembed_core"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _compare_trust(base: dict, this: dict) -> None:
    """Print whether two trust calibrations agree (exactly, or their largest difference)."""
    import numpy as np

    print("trust dicts identical:", base == this)
    rule_a, rule_b = base["unknown_rule"], this["unknown_rule"]
    print("signal", rule_a["signal"], rule_b["signal"])
    for key in ("recall", "fpr"):
        print(key, rule_a[key], rule_b[key])
    diff = np.abs(np.asarray(rule_a["thresholds"]) - np.asarray(rule_b["thresholds"])).max()
    print("max |thresholds diff|", float(diff))
    print("candidates", rule_a["info"]["candidates"], rule_b["info"]["candidates"])
    print("accuracy", base["coverage_curve"]["accuracy"], this["coverage_curve"]["accuracy"])


def main() -> None:
    """Run the stages (and the base revision's) on the cached cells; print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="cells (default 100,000)")
    parser.add_argument("--base", default=None, help="also run git revision BASE (7c9446c)")
    parser.add_argument("--compare", action="store_true", help="compare neighbours, outputs")
    parser.add_argument(
        "--rev", default=None, help="run git revision REV as 'this' (default: the tree)"
    )
    args = parser.parse_args()
    cache = _cache(args.n)
    import numpy as np

    runs = {}
    if args.base:
        runs["base"] = _child(_STAGES, _export(args.base), str(cache), str(cache / "base.npz"))
    this = _export(args.rev) if args.rev else ROOT
    runs["this"] = _child(_STAGES, this, str(cache), str(cache / "this.npz"))
    rows = ["| variant | load | classifier wall / CPU s | Unknown rule wall / CPU s | T | ECE |"]
    rows.append("|---|---|---|---|---|---|")
    for name, run in runs.items():
        rows.append(
            f"| {name} | {run['load'][0]:.2f} | {run['fit_wall']:.1f} / {run['fit_cpu']:.1f} "
            f"| {run['trust_wall']:.1f} / {run['trust_cpu']:.1f} | {run['temperature']:.4f} "
            f"| {run['ece']:.4f} |"
        )
    print(f"{runs['this']['n']:,} cells\n" + "\n".join(rows))
    for name, run in runs.items():
        print(name, "classifier steps", run["steps"])
        print(name, "info", {k: v for k, v in run["info"].items() if k != "class_counts"})
    if args.compare and "base" in runs:
        a, b = np.load(cache / "base.npz"), np.load(cache / "this.npz")
        print("max |coef| diff final model:", float(np.abs(a["coef"] - b["coef"]).max()))
        # the Unknown rule of this revision on the base revision's classifier
        same = _child(_STAGES, this, str(cache), str(cache / "same.npz"), str(cache / "base.npz"))
        print(f"Unknown rule alone on the base classifier: {same['trust_wall']:.1f} s")
        _compare_trust(runs["base"]["trust"], same["trust"])
    if args.compare:
        print("held-out neighbours:", _child(_NEIGHBOURS, this, str(cache)))


if __name__ == "__main__":
    main()
