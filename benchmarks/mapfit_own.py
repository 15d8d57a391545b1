"""``python -m benchmarks.mapfit_own``: the engine's own map fit against umap-learn's, same run.

The reference builder used to fit its map with umap-learn (``mapfit.fit_reference_umap``:
exact cosine neighbours handed over as ``precomputed_knn``); it now runs
:func:`scembed_core.refmap.fit_reference_map` (umap-learn 0.5's fit ported onto numba
kernels cached on disk). Each fit runs in a fresh interpreter, as the Train page's first
build in a new server or a ``train`` command: wall and CPU seconds from the fit's import to
its coordinates, import included.

Data: the built-in reference's 8,785 cells in its analysis space (``reference.cell_space``)
and a 3,790-cell reference (the first 3,790 cells of ``../shared/data/granja2019_bmmc``
embedded with the built-in model). Quality of each 8,785-cell map, same run:

* trustworthiness (``sklearn.manifold.trustworthiness``, cosine, k = 15) on a 3,000-cell
  sample;
* 2-D kNN label agreement: share of each cell's 15 nearest cells on the map with its
  ``cell_type``;
* the demo query (1,550 held-out cells) placed on each map by EV-projection
  (:func:`scembed_core.evmap.transform`): accuracy of the 15-nearest-reference-cells vote on
  the map against the demo's ``cell_type``, and neighbourhood preservation
  (:func:`scembed_core.evaluate.map_quality`);
* the largest coordinate difference between the two maps.

``--build`` also times a whole reference build without Word2Vec on the 3,790 cells
(``build_reference`` with the built-in model: embedding, map, index, classifier, mapping
distances, Unknown calibration), per stage, in a fresh interpreter. Prints a Markdown
section for BENCHMARKS.md.

``--large N --landmarks 20000,20000:100:1.0`` also fits the N resampled cells as landmark
maps (:mod:`scembed_core.landmarks`; ``L[:R:A[:P]]``: L landmarks, R refining epochs from
learning rate A, placement in P epochs), each after the build's index and its one search of
every cell, against the map of all N cells, same run and quality figures.
``--index-recall N`` times the reference index over N resampled cells at
``ef_construction`` 200 and 100 and checks the recall of the exact 16 nearest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRANJA = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
N_SMALL = 3790

_FIT = r"""
import json, sys, time
import numpy as np
space = np.load(sys.argv[2])
steps = {}
def report(fraction, message):  # when each step begins, seconds into the fit
    prefix = ""
    if message.startswith("landmark map"):  # "landmark map (m of n cells): <its step>"
        prefix, message = "landmark ", message.split("): ", 1)[1]
    elif message.startswith("all cells: "):
        prefix, message = "refining ", message.split(": ", 1)[1]
    step = "layout" if message.startswith("layout") else message.split(":")[0].split(" of ")[0]
    steps.setdefault(prefix + step, time.perf_counter() - wall)
wall, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "umap-learn":
    from scembed_core.mapfit import fit_reference_umap
    coords = fit_reference_umap(space).embedding_
else:
    from scembed_core.refmap import fit_reference_map
    epochs = int(sys.argv[4]) if len(sys.argv) > 4 and int(sys.argv[4]) else None
    rule = {}  # no 5th argument: the engine's rule; "full": all cells; L[:R:A]: L landmarks
    if len(sys.argv) > 5:  # (R refining epochs from learning rate A), after the build's index
        import scembed_core.landmarks as landmarks
        from scembed_core.knn import build_cell_index, knn_query_all_threads
        count, *refine = sys.argv[5].split(":")
        rule = ({"landmark_above": 10**12} if count == "full"
                else {"landmark_above": 0, "n_landmarks": int(count)})
        if refine:
            landmarks.REFINE_EPOCHS, landmarks.REFINE_ALPHA = int(refine[0]), float(refine[1])
            if len(refine) > 2:
                landmarks.PLACE_EPOCHS = int(refine[2])
        report(0, "the build's index")
        rule["index"] = build_cell_index(space)
        report(0, "the build's self-query, k = 16")
        rule["neighbors"] = knn_query_all_threads(rule["index"], space, 16)
    coords, _ = fit_reference_map(space, n_epochs=epochs, progress=report, **rule)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
np.save(sys.argv[3], coords)
print(json.dumps({"wall": wall, "cpu": cpu, "umap_imported": "umap" in sys.modules,
                  "steps": steps}))
"""

_BUILD = r"""
import json, sys, time
import anndata as ad
marks = []
started = time.perf_counter()
from scembed_core.reference import load_default_reference
from scembed_core.train import build_reference
model = load_default_reference().model
import numpy as np
cells = ad.read_h5ad(sys.argv[1])
n = int(sys.argv[2])
if n <= cells.n_obs:
    cells = cells[:n].copy()
else:  # n cells drawn with replacement, each losing a random 20% of its open peaks
    rng = np.random.default_rng(0)
    cells = cells[np.sort(rng.choice(cells.n_obs, n))].copy()
    cells.obs_names_make_unique()
    cells.X.data[rng.random(cells.X.nnz) < 0.2] = 0
    cells.X.eliminate_zeros()
loaded = time.perf_counter() - started
started, cpu = time.perf_counter(), time.process_time()
build_reference(model, cells, label_key="cell_type", name="bench",
                progress=lambda f, m: marks.append((time.perf_counter() - started, m)))
print(json.dumps({"total": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                  "loaded": loaded, "marks": marks, "n": n,
                  "umap_imported": "umap" in sys.modules}))
"""


def _child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spaces() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The built-in reference's space and labels, the 3,790-cell space, the demo on each map."""
    import anndata as ad

    from scembed_core.io import read_dataset
    from scembed_core.labels.vote import query_reference_neighbors
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

    reference = load_default_reference()
    space = np.asarray(reference.cell_space, dtype=np.float32)
    labels = reference.cells.obs["cell_type"].astype(str).to_numpy()
    small = ad.read_h5ad(GRANJA)[:N_SMALL].copy()
    small_space = project(small, reference, ev=False).space
    small_space = small_space[np.isfinite(small_space).all(axis=1)].astype(np.float32)
    query = read_dataset(DEMO_QUERY_PATH)
    projection = project(query, reference, ev=False)
    ok = np.isfinite(projection.space).all(axis=1)
    indices, distances = query_reference_neighbors(reference, projection.embedding[ok], k=15)
    demo = {
        "space": projection.space[ok],
        "labels": query.obs["cell_type"].astype(str).to_numpy()[ok],
        "indices": indices,
        "distances": distances,
        "params": reference.map_params,
    }
    return space, labels, small_space, demo


def _resampled(space: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cells drawn SMOTE-style: a cell moved towards one of its 15 nearest cells.

    Returns the cells and the built-in cell each was drawn from (its label)."""
    from scembed_core.mapfit import exact_cosine_neighbors

    rng = np.random.default_rng(0)
    rows = rng.choice(len(space), n)
    near = exact_cosine_neighbors(space, 16)[0][:, 1:]
    other = near[rows, rng.integers(0, 15, n)]
    weight = rng.random((n, 1)).astype(np.float32)
    return (space[rows] + weight * (space[other] - space[rows])).astype(np.float32), rows


def _quality(space: np.ndarray, labels: np.ndarray, coords: np.ndarray, demo: dict) -> dict:
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    from scembed_core.evaluate import map_quality
    from scembed_core.evmap import transform

    sample = np.random.default_rng(0).choice(len(space), 3000, replace=False)
    trust = trustworthiness(space[sample], coords[sample], n_neighbors=15, metric="cosine")
    _, idx = NearestNeighbors(n_neighbors=16).fit(coords).kneighbors(coords)
    agreement = float((labels[idx[:, 1:]] == labels[:, None]).mean())
    # the built-in map's parameters: umap-learn's defaults, the same as both fits'
    placed = transform(demo["indices"], demo["distances"], coords, demo["params"]).coords
    ev = map_quality(demo["space"], space, placed, coords, labels, demo["labels"])
    return {"trust": float(trust), "agreement": agreement, **ev}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="store_true", help="also time a whole build")
    parser.add_argument("--large", type=int, default=0, help="also fit N resampled cells")
    parser.add_argument(
        "--epochs", type=int, default=0, help="also fit the N cells with this many epochs"
    )
    parser.add_argument("--only-large", action="store_true", help="fit the N cells only")
    parser.add_argument(
        "--landmarks",
        default="",
        help="also fit the N cells as landmark maps of these counts (comma-separated), "
        "against the map of all N cells, same run",
    )
    parser.add_argument("--build-large", type=int, default=0, help="also time an N-cell build")
    parser.add_argument(
        "--index-recall",
        type=int,
        default=0,
        help="only build the reference index over N resampled cells at ef_construction 200 "
        "and 100: seconds and recall of the exact 16 nearest",
    )
    parser.add_argument("--only-build", action="store_true", help="time the builds only")
    parser.add_argument(
        "--builtin-landmarks",
        default="",
        help="only fit the built-in reference's 8,785 real cells as landmark maps of these "
        "counts (comma-separated), against its map of all cells, in this process",
    )
    args = parser.parse_args()
    load = os.getloadavg()
    if args.index_recall:
        _print_index_recall(args.index_recall, load)
        return
    if args.builtin_landmarks:
        _print_builtin_landmarks([int(c) for c in args.builtin_landmarks.split(",")], load)
        return
    builds = []
    if args.build:
        builds.append(_child(_BUILD, str(GRANJA), str(N_SMALL)))
    if args.build_large:
        builds.append(_child(_BUILD, str(GRANJA), str(args.build_large)))
    if args.only_build:
        print(
            f"```bash\n{' '.join(['nice -n 10 .venv/bin/python -m benchmarks.mapfit_own', *sys.argv[1:]])}\n```\n"
        )
        for b in builds:
            _print_build(b)
        print(
            f"- Load average at start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; at end: "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}."
        )
        return
    space, labels, small_space, demo = _spaces()
    rows: dict = {}
    large_quality: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (("full", space), ("small", small_space)):
            np.save(Path(tmp) / f"{name}.npy", data)
        if args.large:
            large, drawn = _resampled(space, args.large)
            np.save(Path(tmp) / "large.npy", large)
            variants = [(None, "full", "200 (umap-learn's rule), all cells")]
            if args.epochs:
                variants.append((args.epochs, "full", f"{args.epochs}, all cells"))
            for count in filter(None, args.landmarks.split(",")):
                label = f"landmark map, {int(count.split(':')[0]):,} landmarks"
                if ":" in count:
                    label += ", refined {} epochs from learning rate {}".format(
                        *count.split(":")[1:3]
                    )
                if count.count(":") > 2:
                    label += f", placed in {count.split(':')[3]} epochs"
                variants.append((None, count, label))
            for epochs, rule, label in variants:
                key = ("scembed", "large") if label.startswith("200") else ("scembed", label)
                out = Path(tmp) / "large-out.npy"
                extra = [str(epochs or 0), rule]
                rows[key] = _child(_FIT, "scembed", str(Path(tmp) / "large.npy"), str(out), *extra)
                rows[key]["n"], rows[key]["label"] = args.large, label
                if len(variants) > 1:
                    large_quality[key] = _large_quality(large, labels[drawn], np.load(out), demo)
        if args.only_large:
            print(f"```bash\n{_command()}\n```")
            _print_large(large_quality, rows)
            print(f"\n- Load average at start: {_loads(load)}; at end: {_loads(os.getloadavg())}.")
            return
        for engine in ("umap-learn", "scembed"):
            for name in ("full", "small"):
                out = Path(tmp) / f"{engine}-{name}.npy"
                rows[engine, name] = _child(_FIT, engine, str(Path(tmp) / f"{name}.npy"), str(out))
                rows[engine, name]["coords"] = np.load(out)
    quality = {
        e: _quality(space, labels, rows[e, "full"]["coords"], demo)
        for e in ("umap-learn", "scembed")
    }
    diff = float(
        np.abs(rows["umap-learn", "full"]["coords"] - rows["scembed", "full"]["coords"]).max()
    )
    _print(rows, quality, diff, builds, load, len(space), len(small_space))
    _print_large(large_quality, rows)


def _print(rows, quality, diff, builds, load, n_full, n_small) -> None:  # noqa: ANN001
    print("## `python -m benchmarks.mapfit_own`: the reference map without umap-learn (issue 24)\n")
    command = " ".join(["nice -n 10 .venv/bin/python -m benchmarks.mapfit_own", *sys.argv[1:]])
    print(f"```bash\n{command}\n```\n")
    print(
        "| map fit, fresh process (import included) | cells | wall | CPU | umap imported "
        "| trustworthiness (k=15, cosine, 3,000 cells) | 2-D 15-NN label agreement "
        "| demo on the map: vote accuracy | demo: neighbourhood preservation |"
    )
    print("|:---|---:|---:|---:|:---|---:|---:|---:|---:|")
    names = {
        "umap-learn": "before: umap-learn (`mapfit.fit_reference_umap`, exact kNN)",
        "scembed": "after: `refmap.fit_reference_map`",
    }
    for engine in ("umap-learn", "scembed"):
        for name, n in (("full", n_full), ("small", n_small)):
            row = rows[engine, name]
            q = quality[engine] if name == "full" else None
            metrics = (
                f"{q['trust']:.4f} | {q['agreement']:.4f} | {q['vote_accuracy']:.4f} | "
                f"{q['preservation']:.4f}"
                if q
                else "| | |"
            )
            print(
                f"| {names[engine]} | {n:,} | {row['wall']:.1f} s | {row['cpu']:.1f} s | "
                f"{'yes' if row['umap_imported'] else 'no'} | {metrics} |"
            )
    print(f"\n- Largest coordinate difference between the two 8,785-cell maps: {diff:.3g}.")
    sizes = {"full": n_full, "small": n_small}
    for name in ("full", "small", "large"):
        row = rows.get(("scembed", name))
        if row is None:
            continue
        n = row.get("n", sizes.get(name))
        marks = [*row["steps"].items(), ("end", row["wall"])]
        parts = ", ".join(
            f"{a} {t1 - t0:.1f} s" for (a, t0), (_, t1) in zip(marks, marks[1:], strict=False)
        )
        kind = " (resampled SMOTE-style from the built-in cells)" if name == "large" else ""
        print(
            f"- Engine fit, {n:,} cells{kind}: {row['wall']:.1f} s wall, {row['cpu']:.1f} s CPU; "
            f"import and kernels from the disk cache {marks[0][1]:.1f} s, then {parts}."
        )
    for b in builds:
        _print_build(b)
    print(
        f"- Load average at start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (shared 2-core "
        f"machine). {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs. "
        "numba's disk cache filled beforehand by `python -m scembed_core.warm` (`make venv`)."
    )


def _large_quality(space: np.ndarray, labels: np.ndarray, coords: np.ndarray, demo: dict) -> dict:
    """``_quality`` on a large map: the demo's neighbours searched among the large cells."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(space)
    distances, indices = nn.kneighbors(demo["space"], 15)
    return _quality(
        space,
        labels,
        coords,
        {**demo, "indices": indices, "distances": distances.astype(np.float32)},
    )


def _print_large(quality: dict, rows: dict) -> None:
    if not quality:
        return
    print(
        "\n| large map, layout epochs | cells | wall | CPU | layout | trustworthiness "
        "| 2-D 15-NN label agreement | demo vote accuracy | demo preservation | steps |"
    )
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
    for key, q in quality.items():
        row = rows[key]
        marks = [*row["steps"].items(), ("end", row["wall"])]
        steps = {a: t1 - t0 for (a, t0), (_, t1) in zip(marks, marks[1:], strict=False)}
        layout = steps.get("layout", steps.get("landmark layout", float("nan")))
        parts = ", ".join(f"{a} {t:.1f} s" for a, t in steps.items())
        print(
            f"| {row['label']} | {row['n']:,} | {row['wall']:.1f} s | {row['cpu']:.1f} s | "
            f"{layout:.1f} s | {q['trust']:.4f} | {q['agreement']:.4f} | "
            f"{q['vote_accuracy']:.4f} | {q['preservation']:.4f} | {parts} |"
        )


def _print_index_recall(n: int, load: tuple[float, float, float]) -> None:
    """The reference index over ``n`` SMOTE-style cells at both ``ef_construction`` values."""
    import time

    from scembed_core.knn import build_cell_index, index_ef_construction
    from scembed_core.reference import load_default_reference

    space = np.asarray(load_default_reference().cell_space, dtype=np.float32)
    large, _ = _resampled(space, n)
    sample = np.sort(np.random.default_rng(1).choice(n, 2000, replace=False))
    unit = large / np.linalg.norm(large, axis=1, keepdims=True)
    sims = unit[sample] @ unit.T
    exact = np.argpartition(-sims, 16, axis=1)[:, :16]
    print(f"```bash\n{_command()}\n```\n")
    print(
        "| reference index, one thread | cells | ef_construction | build wall | build CPU "
        "| recall of the exact 16 nearest (2,000 cells, query ef 100) |"
    )
    print("|:---|---:|---:|---:|---:|---:|")
    for ef in (200, 100):
        wall, cpu = time.perf_counter(), time.process_time()
        index = build_cell_index(large, ef_construction=ef)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        found, _ = index.knn_query(large[sample], k=16)
        recall = np.mean([len(set(a) & set(b)) / 16 for a, b in zip(found, exact, strict=True)])
        rule = " (the rule)" if ef == index_ef_construction(n) else ""
        print(
            f"| `build_cell_index`{rule} | {n:,} | {ef} | {wall:.1f} s | {cpu:.1f} s "
            f"| {recall:.4f} |"
        )
    print(f"\n- Load average at start: {_loads(load)}; at end: {_loads(os.getloadavg())}.")


def _command() -> str:
    return " ".join(["nice -n 10 .venv/bin/python -m benchmarks.mapfit_own", *sys.argv[1:]])


def _loads(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def _stages(build: dict) -> dict[str, float]:
    """Seconds per stage (and per step of the map stage) from a build's progress marks."""
    marks = build["marks"]
    stages: dict[str, float] = {}
    for (t0, m0), (t1, _) in zip(marks, marks[1:] + [(build["total"], "")], strict=True):
        parts = m0.split(", about")[0].split(": ")
        stage = parts[0]
        if stage == "Fitting the reference map" and len(parts) > 1:
            step = parts[1]
            step = "layout" if step.startswith("layout") else step.split(" of ")[0]
            stage = f"{stage} ({step.split(':')[0]})"
        elif stage == "Label classifier" and len(parts) > 1:
            stage = f"{stage} ({re.split(r'[0-9]', parts[1])[0].strip()})"
        stages[stage] = stages.get(stage, 0.0) + (t1 - t0)
    return stages


def _print_builtin_landmarks(counts: list[int], load: tuple[float, float, float]) -> None:
    """Landmark maps of the built-in real cells against their map of all cells, same run."""
    import time

    from scembed_core.refmap import fit_reference_map

    space, labels, _, demo = _spaces()
    print(
        f"```bash\nnice -n 10 .venv/bin/python -m benchmarks.mapfit_own {' '.join(sys.argv[1:])}\n```\n"
    )
    print(
        "| built-in map, 8,785 real cells | wall | trustworthiness | 2-D 15-NN label agreement "
        "| demo vote accuracy | demo preservation |"
    )
    print("|:---|---:|---:|---:|---:|---:|")
    for count in [None, *counts]:
        started = time.perf_counter()
        if count is None:
            coords, _ = fit_reference_map(space)
        else:
            coords, _ = fit_reference_map(space, landmark_above=count, n_landmarks=count)
        wall = time.perf_counter() - started
        q = _quality(space, labels, coords, demo)
        name = "all cells" if count is None else f"{count:,} landmarks, the rest placed"
        print(
            f"| {name} | {wall:.1f} s | {q['trust']:.4f} | {q['agreement']:.4f} "
            f"| {q['vote_accuracy']:.4f} | {q['preservation']:.4f} |"
        )
    print(f"\n- Load average at start: {_loads(load)}.")


def _print_build(build: dict) -> None:
    n = build["n"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in _stages(build).items() if v >= 0.05)
    kind = (
        "Granja cells"
        if n <= 10_335
        else "cells drawn with replacement from the 10,335 Granja cells, each losing 20% of "
        "its peaks at random"
    )
    print(
        f"- Whole build without Word2Vec, {n:,} {kind}, with the built-in model "
        f"(`build_reference`, fresh process, after loading): **{build['total']:.1f} s** wall, "
        f"{build['cpu']:.1f} s CPU ({parts}); umap imported: "
        f"{'yes' if build['umap_imported'] else 'no'}."
    )


if __name__ == "__main__":
    main()
