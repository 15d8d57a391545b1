"""EV-projection: scEmbed's own transform (scembed_core.evmap) against umap-learn's.

``python -m benchmarks.ev_transform`` (about 3 minutes here). Quality, in the same run:
the fraction of each query cell's 15 nearest reference cells (analysis space, cosine) that
are among its 15 nearest on the map, and the accuracy of a 15-nearest-reference-cells label
vote on the map, for umap-learn's ``transform`` and ours on the same fitted map:

* the demo query (held-out Granja cells, ``cell_type``) on a map fitted in this run with
  the builder's settings (``fit_reference_umap``, cosine) on the built-in reference cells;
* the same on the shipped built-in map, against the previous version's pickled model when
  ``../main`` still has it (read only here, our own file);
* planted clusters (8 types, 20-D).

Speed: ``project`` on the demo query as a whole fresh process (this tree, and the previous
version in ``--old-tree`` if given), and EV for 1M cells in memory (neighbour search + our
transform; 1M query vectors resampled from the demo's with noise). ``--browser`` also
times a fresh ``streamlit run`` in headless Chromium: the landing page's first chart and
the first "Project cells" (click to the map).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _quality(query_space, ref_space, coords, ref_map, ref_labels, query_labels) -> dict:
    from scembed_core.evaluate import map_quality

    return map_quality(query_space, ref_space, coords, ref_map, ref_labels, query_labels)


def demo_quality(old_tree: Path | None) -> dict:
    """umap-learn vs ours on the demo query, on a fresh fit and on the shipped map."""
    from scembed_core.evmap import MapParams, transform
    from scembed_core.io import read_dataset
    from scembed_core.labels.vote import query_reference_neighbors
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference
    from scembed_core.train import fit_reference_umap

    reference = load_default_reference()
    query = read_dataset(DEMO_QUERY_PATH)
    projection = project(query, reference, ev=False)
    space = projection.space
    ok = np.isfinite(space).all(axis=1)
    space, labels = space[ok], query.obs["cell_type"].to_numpy()[ok]
    ref_space = reference.cell_space
    ref_labels = reference.cells.obs["cell_type"].to_numpy()
    indices, distances = query_reference_neighbors(reference, projection.embedding[ok], k=15)
    out: dict = {"n_query": int(ok.sum()), "n_reference": reference.n_cells}

    started = time.perf_counter()
    model = fit_reference_umap(ref_space, transformable=True)
    out["fit_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    theirs = model.transform(space)
    umap_seconds = time.perf_counter() - started
    params = MapParams.from_umap(model)
    started = time.perf_counter()
    mine = transform(indices, distances, model.embedding_, params).coords
    ours_seconds = time.perf_counter() - started
    out["fresh_fit"] = {
        "umap_learn": _quality(space, ref_space, theirs, model.embedding_, ref_labels, labels),
        "ours": _quality(space, ref_space, mine, model.embedding_, ref_labels, labels),
        "umap_learn_seconds": umap_seconds,
        "ours_seconds": ours_seconds,
    }
    shipped = reference.map_coords
    mine = transform(indices, distances, shipped, reference.map_params).coords
    out["shipped_map"] = {"ours": _quality(space, ref_space, mine, shipped, ref_labels, labels)}
    pickle = None if old_tree is None else old_tree / "scembed_core/data/default_reference"
    if pickle is not None and (pickle / "umap_model.joblib").is_file():
        import joblib

        old = joblib.load(pickle / "umap_model.joblib")  # our own built-in file
        if np.allclose(old.embedding_, shipped):
            theirs = old.transform(space)
            out["shipped_map"]["umap_learn"] = _quality(
                space, ref_space, theirs, shipped, ref_labels, labels
            )
    return out


def planted_quality() -> dict:
    """umap-learn vs ours on planted clusters (exact cosine neighbours for ours)."""
    from sklearn.neighbors import NearestNeighbors

    from scembed_core.evmap import MapParams, transform
    from scembed_core.train import fit_reference_umap

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 20)) * 3
    ref_types, query_types = rng.integers(0, 8, 3000), rng.integers(0, 8, 1000)
    ref = (centers[ref_types] + rng.normal(size=(3000, 20))).astype(np.float32)
    query = (centers[query_types] + rng.normal(size=(1000, 20))).astype(np.float32)
    model = fit_reference_umap(ref, transformable=True)
    distances, indices = (
        NearestNeighbors(metric="cosine", algorithm="brute").fit(ref).kneighbors(query, 15)
    )
    params, emb = MapParams.from_umap(model), model.embedding_
    runs: dict = {"umap_learn": [], "ours": []}
    for seed in range(5):  # both are seeded SGD: the spread over seeds is the noise level
        model.transform_seed = 42 + seed
        theirs = model.transform(query)
        mine = transform(indices, distances.astype(np.float32), emb, params, seed=42 + seed)
        runs["umap_learn"].append(_quality(query, ref, theirs, emb, ref_types, query_types))
        runs["ours"].append(_quality(query, ref, mine.coords, emb, ref_types, query_types))
    random = emb[rng.integers(0, len(emb), len(query))]
    out = {"random": _quality(query, ref, random, emb, ref_types, query_types)}
    for name, rows in runs.items():
        out[name] = {
            "seed_42": rows[0],
            "mean_over_5_seeds": {
                key: float(np.mean([r[key] for r in rows]))
                for key in ("preservation", "vote_accuracy")
            },
            "range_over_5_seeds": {
                key: [float(min(r[key] for r in rows)), float(max(r[key] for r in rows))]
                for key in ("preservation", "vote_accuracy")
            },
        }
    return out


def cli_seconds(tree: Path, out_dir: Path) -> dict:
    """``python -m scembed_core project`` on the demo query, as a whole fresh process.

    Wall time, and the child's CPU time (user + system), which a shared machine's load
    inflates far less.
    """
    import resource

    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    demo = tree / "scembed_core/data/demo_query.h5ad"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "scembed_core", "project", str(demo), "--reference", "default"]
        + ["--out", str(out_dir / f"{tree.name}.h5ad")],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def million_cells(n: int = 1_000_000) -> dict:
    """EV for ``n`` cells in memory: neighbour search + transform (30 epochs, umap's rule)."""
    from scembed_core.evmap import transform, warm
    from scembed_core.io import read_dataset
    from scembed_core.knn import knn_query
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

    reference = load_default_reference()
    space = project(read_dataset(DEMO_QUERY_PATH), reference, ev=False).space
    space = space[np.isfinite(space).all(axis=1)]
    rng = np.random.default_rng(0)
    scale = 0.05 * space.std(axis=0)
    big = space[rng.integers(0, len(space), n)] + rng.normal(size=(n, space.shape[1])) * scale
    big = big.astype(np.float32)
    warm()
    started, cpu = time.perf_counter(), time.process_time()
    indices, distances = knn_query(reference.index, big, 15)
    search, search_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    placed = transform(indices, distances, reference.map_coords, reference.map_params)
    ev, ev_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "n_cells": n,
        "search_seconds": search,
        "search_cpu_seconds": search_cpu,
        "transform_seconds": ev,
        "transform_cpu_seconds": ev_cpu,
        "total_seconds": search + ev,
        "load_average_1min": os.getloadavg()[0],
        "epochs": placed.n_epochs,
        "finite": float(np.isfinite(placed.coords).all(axis=1).mean()),
    }


def browser_seconds() -> dict:
    """A fresh ``streamlit run``: seconds to the landing page's first chart, and the first
    "Project cells" on the demo query (click to the map), in headless Chromium."""
    import re

    sys.path.insert(0, str(ROOT / "scripts"))
    import screenshots
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    with screenshots.running_app() as url, sync_playwright() as playwright:
        healthy = time.perf_counter() - started
        browser = screenshots.launch_browser(playwright)
        try:
            page = browser.new_context(viewport=screenshots.VIEWPORT).new_page()
            page.goto(url)
            page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=240_000)
            first_chart = time.perf_counter() - started
            screenshots.wait_idle(page)
            screenshots.go_to(page, "Data")
            page.get_by_role("button", name="Load demo dataset").click()
            page.get_by_text("Peaks in universe").wait_for(timeout=screenshots.SLOW_MS)
            screenshots.wait_idle(page)
            screenshots.go_to(page, "Project")
            clicked = time.perf_counter()
            page.get_by_role("button", name="Project cells").click()
            done = page.get_by_text(re.compile(r"^Projected [\d,]+ cells in")).first
            done.wait_for(timeout=screenshots.SLOW_MS)
            page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=240_000)
            first_projection = time.perf_counter() - clicked
        finally:
            browser.close()
    return {
        "server_healthy": healthy,
        "landing_first_chart": first_chart,
        "first_project_click_to_map": first_projection,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, default=ROOT.parent / "main")
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--browser", action="store_true", help="also time a fresh app server")
    args = parser.parse_args()
    old_tree = args.old_tree if (args.old_tree / "scembed_core").is_dir() else None
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        report["project_cli_seconds"] = {"this tree": cli_seconds(ROOT, Path(tmp))}
        if (
            old_tree is not None
            and (old_tree / "scembed_core/data/default_reference/umap_model.joblib").is_file()
        ):
            report["project_cli_seconds"]["previous (umap-learn pickle)"] = cli_seconds(
                old_tree, Path(tmp)
            )
    report["ev_in_memory"] = million_cells(args.cells)
    if not args.skip_quality:
        report["planted"] = planted_quality()
        report["demo"] = demo_quality(old_tree)
    if args.browser:
        report["browser_seconds"] = browser_seconds()
    print(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
