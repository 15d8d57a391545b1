"""Speed and memory: projection throughput, end-to-end CLI and app start, training, and the
memory-bandwidth bound of the sparse products.

Heavy steps run in child processes (``python -m benchmarks.speed worker-...``) so each one's
peak RSS is its own. Run on its own with ``python -m benchmarks.speed`` (prints JSON);
``make bench`` runs it through :mod:`benchmarks.run_all`, which writes the report.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from . import report as rp
from .common import make_workload, python_module, run_measured

NAIVE_CELLS = 100
REPEATS = 3
APP_TIMEOUT = 180


# --------------------------------------------------------------------------- workers


def _status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _load_workload(folder: Path):
    import anndata as ad

    from scembed_core.regions import GenomicRegions

    started = time.perf_counter()
    adata = ad.read_h5ad(folder / "query.h5ad")
    universe = GenomicRegions.read_bed(folder / "universe.bed")
    vectors = np.load(folder / "vectors.npy")
    return adata, universe, vectors, time.perf_counter() - started


def worker_map_pool(folder: Path, repeats: int, save: Path | None) -> dict:
    """Time map + pool on the generated workload; memory by tracemalloc and RSS.

    Two formulations are timed: the three public calls (``map_peaks_to_universe``,
    ``cells_by_universe``, ``pool_region_vectors``) and what ``project()`` runs
    (``compute_coverage`` + ``embed_cells``: the fused kernel that pools straight from the
    peaks, never building the cells x universe matrix).
    """
    import tracemalloc

    from scembed_core import project as project_module
    from scembed_core.model import RegionModel
    from scembed_core.project import compute_coverage, pool_region_vectors, regions_of
    from scembed_core.regions import cells_by_universe, map_peaks_to_universe

    adata, universe, vectors, read_s = _load_workload(folder)
    trained = np.ones(len(universe), dtype=bool)
    model = RegionModel(universe, vectors, trained)
    embed_cells = getattr(project_module, "embed_cells", None)
    x = adata.X
    rss_loaded = _status_bytes("VmRSS")

    def once() -> tuple[dict, object, object, np.ndarray]:
        t0 = time.perf_counter()
        mapping = map_peaks_to_universe(regions_of(adata), universe)
        t1 = time.perf_counter()
        cells = cells_by_universe(x, mapping)
        t2 = time.perf_counter()
        embedding = pool_region_vectors(cells, vectors, trained)
        t3 = time.perf_counter()
        steps = {"map": t1 - t0, "x_at_m": t2 - t1, "pool": t3 - t2, "total": t3 - t0}
        return steps, mapping, cells, embedding

    def fused() -> tuple[dict, np.ndarray]:
        t0 = time.perf_counter()
        coverage = compute_coverage(adata, model)
        t1 = time.perf_counter()
        embedding = embed_cells(coverage, model)
        t2 = time.perf_counter()
        return {"coverage": t1 - t0, "embed": t2 - t1, "total": t2 - t0}, embedding

    runs, fused_runs = [], []
    for _ in range(repeats):
        steps, mapping, cells, embedding = once()
        runs.append(steps)
    if embed_cells is not None:
        for _ in range(repeats):
            steps, fused_embedding = fused()
            fused_runs.append(steps)
        agree = float(np.nanmax(np.abs(fused_embedding - embedding)))
        del fused_embedding
    hwm_untraced = _status_bytes("VmHWM")
    del mapping, cells, embedding
    tracemalloc.start()
    _, mapping, cells, embedding = once()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    traced_fused = None
    if embed_cells is not None:
        tracemalloc.start()
        fused()
        _, traced_fused = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if save is not None:
        np.save(save, embedding)
    return {
        "read_seconds": read_s,
        "runs": runs,
        "fused_runs": fused_runs,
        "fused_vs_three_calls_max_abs_diff": agree if embed_cells is not None else None,
        "tracemalloc_peak": traced_peak,
        "tracemalloc_peak_fused": traced_fused,
        "rss_after_load": rss_loaded,
        "rss_peak_untraced": hwm_untraced,
        "n_cells": int(x.shape[0]),
        "n_peaks": int(x.shape[1]),
        "n_universe": len(universe),
        "dim": int(vectors.shape[1]),
        "nnz_x": int(x.nnz),
        "nnz_m": int(mapping.matrix.nnz),
        "nnz_c": int(cells.nnz),
        "n_mapped_peaks": mapping.n_mapped_peaks,
        "input_bytes": int(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes + vectors.nbytes),
    }


def worker_naive(folder: Path, n_cells: int) -> dict:
    """The paper's per-cell approach: an interval tree per chromosome, one query per peak."""
    from intervaltree import IntervalTree

    from scembed_core.project import pool_region_vectors, regions_of
    from scembed_core.regions import cells_by_universe, map_peaks_to_universe

    adata, universe, vectors, _ = _load_workload(folder)
    started = time.perf_counter()
    trees = {}
    for chrom in np.unique(universe.chrom):
        idx = np.flatnonzero(universe.chrom == chrom)
        trees[chrom] = IntervalTree.from_tuples(
            zip(universe.start[idx].tolist(), universe.end[idx].tolist(), idx.tolist(), strict=True)
        )
    build_s = time.perf_counter() - started

    peaks = regions_of(adata)
    p_chrom, p_start, p_end = peaks.chrom, peaks.start.tolist(), peaks.end.tolist()
    x = adata.X[:n_cells].tocsr()
    out = np.full((n_cells, vectors.shape[1]), np.nan, dtype=np.float32)
    started = time.perf_counter()
    for cell in range(n_cells):
        hits: set[int] = set()
        for peak in x.indices[x.indptr[cell] : x.indptr[cell + 1]]:
            tree = trees.get(p_chrom[peak])
            if tree is not None:
                hits.update(iv.data for iv in tree.overlap(p_start[peak], p_end[peak]))
        if hits:
            out[cell] = vectors[sorted(hits)].mean(axis=0)
    per_cell_s = (time.perf_counter() - started) / n_cells

    mapping = map_peaks_to_universe(peaks, universe)
    fast = pool_region_vectors(
        cells_by_universe(x, mapping), vectors, np.ones(len(universe), dtype=bool)
    )
    return {
        "tree_build_seconds": build_s,
        "seconds_per_cell": per_cell_s,
        "n_cells_timed": n_cells,
        "max_abs_diff_vs_vectorized": float(np.nanmax(np.abs(out - fast))),
    }


# --------------------------------------------------------------------------- measurements


def measure_map_pool(folder: Path, *, save: Path | None = None) -> dict:
    """Run the map+pool worker in a child process; adds its wall time and peak RSS."""
    args = ["worker-map-pool", str(folder), "--repeats", str(REPEATS)]
    if save is not None:
        args += ["--save", str(save)]
    done = run_measured(python_module("benchmarks.speed", *args)).check("map+pool worker")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall"] = done.wall
    result["process_peak_rss"] = done.peak_rss
    return result


def measure_naive(folder: Path, n_cells: int = NAIVE_CELLS) -> dict:
    """Run the naive intervaltree worker on the first ``n_cells`` cells."""
    args = ["worker-naive", str(folder), "--cells", str(n_cells)]
    done = run_measured(python_module("benchmarks.speed", *args)).check("naive worker")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_peak_rss"] = done.peak_rss
    return result


def memory_bandwidth(n_bytes: int = 2**30, repeats: int = 5) -> dict:
    """Single-core streaming bandwidth: ``np.copyto`` (read+write) and ``sum`` (read), best of N."""
    a = np.ones(n_bytes // 8)
    b = np.empty_like(a)
    copy, read = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        copy.append(time.perf_counter() - t)
        t = time.perf_counter()
        a.sum()
        read.append(time.perf_counter() - t)
    return {
        "bytes": n_bytes,
        "copy_seconds": min(copy),
        "read_seconds": min(read),
        "copy_gib_s": 2 * n_bytes / min(copy) / 2**30,
        "read_gib_s": n_bytes / min(read) / 2**30,
    }


def physical_limit(work: dict, bandwidth: dict) -> dict:
    """Bytes the projection must touch, and the time that takes at the measured bandwidth.

    Compulsory traffic is what any implementation must read or write once: the cells x
    peaks CSR (value + column index per entry), the peak -> region map, the region vectors
    and the output. As formulated (one pass per cell summing its regions' vectors), pooling
    also gathers one ``dim x 4``-byte vector row per (cell, region) pair.
    """
    nnz_x, nnz_m, nnz_c = work["nnz_x"], work["nnz_m"], work["nnz_c"]
    dim, n_cells, n_universe = work["dim"], work["n_cells"], work["n_universe"]
    csr = 8  # float32 value + int32 column index per stored entry
    compulsory = {
        "X (cells × peaks), read once": nnz_x * csr,
        "M (peaks → regions), read once": nnz_m * csr,
        "W (region vectors), read once": n_universe * dim * 4,
        "E (cell embeddings), written once": n_cells * dim * 4,
    }
    gather = nnz_c * dim * 4
    read_bw = bandwidth["read_gib_s"] * 2**30
    total_compulsory = sum(compulsory.values())
    fused = work.get("fused_runs") or []
    return {
        "compulsory": compulsory,
        "compulsory_bytes": total_compulsory,
        "gather_bytes": gather,
        "compulsory_seconds": total_compulsory / read_bw,
        "gather_seconds": gather / read_bw,
        "achieved_seconds": float(np.median([r["total"] for r in work["runs"]])),
        "achieved_pool_seconds": float(np.median([r["pool"] for r in work["runs"]])),
        "achieved_fused_seconds": float(np.median([r["total"] for r in fused])) if fused else None,
        "achieved_fused_embed_seconds": (
            float(np.median([r["embed"] for r in fused])) if fused else None
        ),
        "flops": 2 * nnz_c * dim,
    }


def measure_cli(out_dir: Path) -> dict:
    """``python -m scembed_core project`` on the demo query, twice (cold, then warm caches)."""
    import umap

    from scembed_core.reference import DEMO_QUERY_PATH

    cache_files = len(list(Path(umap.__file__).parent.rglob("*.nbi")))
    args = [
        sys.executable,
        "-m",
        "scembed_core",
        "project",
        str(DEMO_QUERY_PATH.relative_to(rp.ROOT)),
        "--reference",
        "default",
        "--out",
        str(out_dir / "demo_projected.h5ad"),
        "--n-clusters",
        "16",
        "--truth-key",
        "cell_type",
    ]
    runs = []
    for _ in range(2):
        done = run_measured(args).check("CLI project")
        runs.append({"wall": done.wall, "peak_rss": done.peak_rss, "stdout": done.stdout})
    shown = " ".join(a if a != sys.executable else "python" for a in args)
    shown = shown.replace(str(out_dir), "$TMP")
    return {"command": shown, "runs": runs, "numba_cache_files_before": cache_files}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return response.status, response.read()


def measure_app() -> dict:
    """Streamlit server readiness (health endpoint, GET /) and the first script run (AppTest)."""
    port = _free_port()
    streamlit = Path(sys.executable).with_name("streamlit")
    args = [str(streamlit), "run", "app.py", "--server.headless", "true"]
    args += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    env = {**__import__("os").environ, "PYTHONPATH": str(rp.ROOT)}
    result: dict = {"command": " ".join(["streamlit", *args[1:]]).replace(str(port), "$PORT")}
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=rp.ROOT, env=env, stdout=log, stderr=log)
        try:
            while time.perf_counter() - started < APP_TIMEOUT:
                try:
                    status, body = _get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                    if status == 200:
                        result["health_seconds"] = time.perf_counter() - started
                        break
                except OSError:
                    time.sleep(0.1)
            if "health_seconds" in result:
                t = time.perf_counter()
                status, body = _get(f"http://127.0.0.1:{port}/")
                result["get_root_seconds"] = time.perf_counter() - t
                result["get_root_status"] = status
                result["get_root_bytes"] = len(body)
                result["ready_seconds"] = time.perf_counter() - started
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    code = (
        "import json, time; t = time.perf_counter(); "
        "from streamlit.testing.v1 import AppTest; "
        "at = AppTest.from_file('app.py', default_timeout=300); at.run(); "
        "print(json.dumps({'seconds': time.perf_counter() - t, "
        "'exceptions': len(at.exception), 'elements': len(list(at.main))}))"
    )
    done = run_measured([sys.executable, "-c", code])
    if done.returncode == 0:
        result["apptest"] = {**json.loads(done.stdout.strip().splitlines()[-1])}
        result["apptest"]["wall"] = done.wall
        result["apptest"]["peak_rss"] = done.peak_rss
    else:
        result["apptest_error"] = done.stderr[-2000:]
    return result


def run(quality: dict | None = None) -> dict:
    """All speed measurements of ``make bench``; ``quality`` supplies the training stats."""
    from scembed_core.reference import DEFAULT_REFERENCE_DIR

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="scembed-bench-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        results["workload"] = make_workload(tmp / "workload")
        results["workload"]["generate_seconds"] = time.perf_counter() - started
        print("speed: workload generated", flush=True)
        results["map_pool"] = measure_map_pool(tmp / "workload")
        print("speed: map+pool measured", flush=True)
        results["naive"] = measure_naive(tmp / "workload")
        print("speed: naive intervaltree measured", flush=True)
        results["bandwidth"] = memory_bandwidth()
        results["limit"] = physical_limit(results["map_pool"], results["bandwidth"])
        results["cli"] = measure_cli(tmp)
        print("speed: CLI measured", flush=True)
    results["app"] = measure_app()
    print("speed: app measured", flush=True)
    manifest = json.loads((DEFAULT_REFERENCE_DIR / "manifest.json").read_text())
    results["default_reference"] = {
        "build_seconds": manifest.get("build_seconds"),
        "training": manifest.get("training"),
        "training_stats": manifest.get("training_stats"),
        "n_cells": manifest.get("n_cells"),
    }
    if quality is not None:
        results["training_runs"] = quality.get("training", [])
    return results


# --------------------------------------------------------------------------- report


def _median(values) -> float:
    return float(np.median(list(values)))


def section(results: dict) -> str:
    """Markdown for the speed and memory part of the ``make bench`` section."""
    out = ["## Speed and memory"]
    wl, mp, naive = results["workload"], results["map_pool"], results["naive"]
    runs, fused = mp["runs"], mp.get("fused_runs") or []
    ours = _median(r["total"] for r in runs)
    best = _median(r["total"] for r in fused) if fused else ours
    naive_total = naive["seconds_per_cell"] * wl["n_cells"] + naive["tree_build_seconds"]
    out.append(
        "### Projection throughput (GENERATED workload, timing only)\n\n"
        "The workload is **generated** (random regions, accessibility and vectors; nothing "
        "biological), only its shapes are realistic: "
        f"{wl['n_cells']:,} cells × {wl['n_peaks']:,} peaks, {wl['nnz']:,} non-zeros "
        f"({wl['density_measured']:.2%} dense, 2–4% per cell, log-normal peak popularity), "
        f"against a universe of {wl['n_universe']:,} regions with random {wl['dim']}-dim "
        f"vectors; {mp['n_mapped_peaks']:,} peaks overlap the universe "
        f"({mp['nnz_m']:,} peak–region pairs). Two formulations of the engine, each run "
        f"{REPEATS} times in one child process after reading the inputs (the first run of "
        "each includes loading numba's compiled kernel): **map + pool** = "
        "`map_peaks_to_universe` + `cells_by_universe` (X@M, binarised) + "
        "`pool_region_vectors`; and what `project()` runs, `compute_coverage` + "
        "`embed_cells` (a fused numba kernel that pools straight from each cell's peaks, "
        "never building the cells × universe matrix). The naive baseline is a per-cell "
        "`intervaltree` lookup (one query per peak, the set of hit regions, numpy mean), "
        f"timed on the first {naive['n_cells_timed']} cells and **extrapolated** to all cells."
    )
    out.append(
        rp.command(
            "make bench   # benchmarks/speed.py: worker-map-pool, worker-naive on the workload"
        )
    )
    rows = [
        [
            f"map + pool, median of {REPEATS} ({', '.join(rp.seconds(r['total']) for r in runs)})",
            rp.seconds(ours),
            f"{wl['n_cells'] / ours:,.0f}",
            rp.ratio(ours, best),
        ],
        ["  of which map peaks → universe", rp.seconds(_median(r["map"] for r in runs)), "", ""],
        [
            "  of which X@M (cells × universe)",
            rp.seconds(_median(r["x_at_m"] for r in runs)),
            "",
            "",
        ],
        ["  of which `pool_region_vectors`", rp.seconds(_median(r["pool"] for r in runs)), "", ""],
    ]
    if fused:
        rows += [
            [
                f"`project()` path: `compute_coverage` + `embed_cells`, median of {REPEATS} "
                f"({', '.join(rp.seconds(r['total']) for r in fused)})",
                rp.seconds(best),
                f"{wl['n_cells'] / best:,.0f}",
                "1×",
            ],
            [
                "  of which `compute_coverage` (map + counts)",
                rp.seconds(_median(r["coverage"] for r in fused)),
                "",
                "",
            ],
            [
                "  of which `embed_cells` (fused pooling)",
                rp.seconds(_median(r["embed"] for r in fused)),
                "",
                "",
            ],
        ]
    rows.append(
        [
            f"naive per-cell intervaltree, {naive['n_cells_timed']} cells timed, "
            f"**EXTRAPOLATED** to {wl['n_cells']:,} (+ {rp.seconds(naive['tree_build_seconds'])} "
            "tree build)",
            rp.seconds(naive_total),
            f"{1 / naive['seconds_per_cell']:,.1f}",
            rp.ratio(naive_total, best),
        ]
    )
    out.append(rp.table(rows, ["what", "wall", "cells/s", "vs fastest"], "lrrr"))
    fused_note = ""
    if mp.get("tracemalloc_peak_fused") is not None:
        fused_note = (
            f", of the `project()` path {rp.gib(mp['tracemalloc_peak_fused'])}; the two "
            f"formulations agree to max |diff| = {mp['fused_vs_three_calls_max_abs_diff']:.1e}"
        )
    out.append(
        f"Memory: peak RSS of the whole child process {rp.gib(mp['process_peak_rss'])} "
        f"(inputs loaded: {rp.gib(mp['rss_after_load'])} RSS, of which X and W are "
        f"{rp.gib(mp['input_bytes'])}); tracemalloc peak (numpy/scipy buffers) of one "
        f"map + pool pass {rp.gib(mp['tracemalloc_peak'])}{fused_note}. The naive process "
        f"peaked at {rp.gib(naive['process_peak_rss'])}; its embeddings of the timed cells "
        f"agree with the engine's to max |diff| = {naive['max_abs_diff_vs_vectorized']:.1e}. "
        f"Reading the inputs (not counted) took {rp.seconds(mp['read_seconds'])}; generating "
        f"them {rp.seconds(wl['generate_seconds'])}."
    )

    out.append("### Memory-bandwidth bound of the projection (physical limit)")
    bw, lim = results["bandwidth"], results["limit"]
    out.append(
        f"Bandwidth measured in the same run with numpy on one core (best of 5, "
        f"{rp.gib(bw['bytes'])} float64): `np.copyto` {bw['copy_gib_s']:.1f} GiB/s "
        f"(read + write), `a.sum()` {bw['read_gib_s']:.1f} GiB/s (read). The bounds below use "
        "the one-core read rate; with both cores streaming it could be up to about twice "
        "that, so they are generous to the engine by at most 2×."
    )
    rows = [[k, rp.gib(v)] for k, v in lim["compulsory"].items()]
    rows.append(["**compulsory traffic, total**", f"**{rp.gib(lim['compulsory_bytes'])}**"])
    rows.append(
        [
            f"pooling as formulated: one W row ({results['map_pool']['dim']} × 4 B) gathered "
            f"per (cell, region) pair, {results['map_pool']['nnz_c']:,} pairs",
            rp.gib(lim["gather_bytes"]),
        ]
    )
    out.append(rp.table(rows, ["data the projection must touch", "bytes"], "lr"))
    bound = lim["compulsory_seconds"] + lim["gather_seconds"]
    rows = [
        ["compulsory traffic at the read bandwidth", rp.seconds(lim["compulsory_seconds"]), "–"],
        ["compulsory + row gathers at the read bandwidth", rp.seconds(bound), "–"],
        [
            "achieved: map + pool (three calls)",
            rp.seconds(lim["achieved_seconds"]),
            f"{lim['achieved_seconds'] / bound:.1f}× the gather bound",
        ],
    ]
    if lim.get("achieved_fused_seconds"):
        rows.append(
            [
                "achieved: `project()` path (fused kernel)",
                rp.seconds(lim["achieved_fused_seconds"]),
                f"{lim['achieved_fused_seconds'] / bound:.1f}× the gather bound, "
                f"{lim['achieved_fused_seconds'] / lim['compulsory_seconds']:.0f}× the "
                "compulsory bound",
            ]
        )
        rows.append(
            [
                "  of which the pooling kernel alone",
                rp.seconds(lim["achieved_fused_embed_seconds"]),
                f"{lim['achieved_fused_embed_seconds'] / lim['gather_seconds']:.1f}× its gather bound",
            ]
        )
    out.append(rp.table(rows, ["", "seconds", "vs bound"], "lrl"))
    text = (
        f"The pooling needs {lim['flops'] / 1e9:.1f} GFLOP (a fraction of a second of vector "
        "work), so it is memory-bound: as formulated it moves one 400-byte vector row per "
        "(cell, region) pair, many times the compulsory traffic, because each region vector "
        "is re-read by every cell that covers it. "
    )
    fused_ratio = (lim.get("achieved_fused_seconds") or np.inf) / bound
    if fused_ratio <= 1.5:
        text += (
            "The fused kernel is at that gather bound (below 1× means popular regions' rows "
            "were served from cache, not DRAM); going further would need a reordering that "
            "keeps vectors in cache across cells (blocking cells by shared regions). "
        )
    else:
        text += (
            f"The fused path is {fused_ratio:.1f}× above it: random 400-byte gathers over a "
            "universe larger than the caches do not stream at the sequential rate, and other "
            "jobs on this machine competed for the two cores during the run. "
        )
    text += (
        "The three-call path is slower because it materialises the cells × universe matrix "
        "(X@M, a general SpGEMM, then binarisation) before pooling."
    )
    out.append(text)

    cli = results["cli"]
    out.append("### End to end: command line on the demo query")
    out.append(
        "The built-in demo query (the 1,550 held-out Granja cells) projected onto the built-in "
        "reference, clustered (resolution searched to 16 clusters), labelled and evaluated, in "
        "a child process; peak RSS from `wait4`. Run 1 pays numba's compilation unless the "
        "on-disk numba caches (umap-learn's and the engine's kernel) already exist "
        f"({cli['numba_cache_files_before']} umap-learn cache index files existed before run "
        "1); run 2 uses the caches."
    )
    out.append(rp.command(cli["command"]))
    rows = []
    for i, r in enumerate(cli["runs"], 1):
        summary = next(
            (line for line in r["stdout"].splitlines() if line.startswith("projected")), ""
        )
        rows.append([f"run {i}", rp.seconds(r["wall"]), rp.gib(r["peak_rss"]), summary])
    out.append(rp.table(rows, ["run", "wall", "peak RSS", "what it printed"], "lrrl"))
    found = re.search(r'"accuracy": ([0-9.]+)', cli["runs"][-1]["stdout"])
    if found:
        out.append(
            f"The command's own evaluation (`--truth-key cell_type`) reports label accuracy "
            f"{float(found.group(1)):.3f} on the demo query, the same cells as row (a) of the "
            "label-transfer table."
        )

    app = results["app"]
    out.append("### App: time to first render")
    out.append(
        "Server readiness, **not browser paint**: wall time from starting the server to "
        "`/_stcore/health` answering 200, then one HTTP GET of `/` (the static page the "
        "browser loads first). The Python script itself runs only when a browser session "
        "connects, so the first script run of `app.py` (the Reference page, which loads the "
        "built-in reference) is timed separately with Streamlit's `AppTest` in a fresh process "
        "(import of streamlit included)."
    )
    out.append(rp.command(app["command"]))
    rows = [
        ["server up: `/_stcore/health` = 200", rp.seconds(app.get("health_seconds"))],
        [
            f"GET `/` (status {app.get('get_root_status', '–')}, "
            f"{app.get('get_root_bytes', 0):,} bytes)",
            rp.seconds(app.get("get_root_seconds")),
        ],
        ["start → page HTML served", rp.seconds(app.get("ready_seconds"))],
    ]
    if "apptest" in app:
        at = app["apptest"]
        rows.append(
            [
                f"first script run of app.py (AppTest, {at['exceptions']} exceptions; "
                f"process peak RSS {rp.gib(at['peak_rss'])})",
                rp.seconds(at["seconds"]),
            ]
        )
    else:
        rows.append(
            [
                "first script run of app.py (AppTest)",
                "failed: " + app.get("apptest_error", "")[-200:],
            ]
        )
    out.append(rp.table(rows, ["step", "wall"], "lr"))

    out.append("### Training")
    ref = results["default_reference"]
    stats = ref["training_stats"] or {}
    training = ref["training"] or {}
    rows = []
    for run in results.get("training_runs", []):
        st = run["stats"]
        rows.append(
            [
                run["name"],
                f"{run['n_cells']:,}",
                f"{st['words_per_epoch']:,}",
                f"window {run['params']['window']}, {run['params']['epochs']} epochs, seed {run['params']['seed']}",
                f"{st['seconds_per_epoch']:.2f}",
                f"{st['words_per_second']:,.0f}",
                rp.seconds(st["seconds"]),
            ]
        )
    if stats:
        rows.append(
            [
                "built-in default reference (`make reference`, manifest)",
                f"{ref['n_cells']:,}",
                f"{stats['words_per_epoch']:,}",
                f"window {training.get('window')}, {training.get('epochs')} epochs, seed {training.get('seed')}",
                f"{stats['seconds_per_epoch']:.2f}",
                f"{stats['words_per_second']:,.0f}",
                rp.seconds(stats["seconds"]),
            ]
        )
    out.append(
        "gensim Word2Vec, CBOW, 2 worker threads, 100 dimensions, on the 8,785 reference "
        "cells (words = accessible regions; every epoch reshuffles each cell's regions). "
        "The rows measured by this run come from the quality benchmarks above."
    )
    out.append(rp.command("make bench   # training stats of the quality runs"))
    out.append(
        rp.table(
            rows,
            ["model", "cells", "words/epoch", "parameters", "s/epoch", "words/s", "training"],
            "lrrlrrr",
        )
    )
    if ref.get("build_seconds"):
        out.append(
            f"The full default-reference build (`make reference`: train 100 epochs at window "
            f"{training.get('window')}, embed the cells, fit the UMAP map, build the kNN index) "
            f"took **{rp.seconds(ref['build_seconds'])}** "
            f"({ref['build_seconds'] / 60:.1f} min; `build_seconds` in "
            "`scembed_core/data/default_reference/manifest.json`, measured when it was built, "
            "not by this run)."
        )
    by_window: dict[int, list[float]] = {}
    for run in results.get("training_runs", []):
        if run["n_cells"] == ref.get("n_cells"):
            by_window.setdefault(run["params"]["window"], []).append(
                run["stats"]["seconds_per_epoch"]
            )
    if 5 in by_window and 50 in by_window:
        w5, w50 = by_window[5], by_window[50]
        out.append(
            f"Fastest epoch in this run: window 5 {min(w5):.2f} s, window 50 {min(w50):.2f} s "
            f"({min(w50) / min(w5):.1f}×). Identical window-5 runs took {min(w5):.2f}–"
            f"{max(w5):.2f} s per epoch: that spread is the other jobs on the machine, so read "
            "these timings as rough."
        )
    return "\n\n".join(out)


# --------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    """Worker sub-commands (used by the benchmarks) or, with no arguments, run everything."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed")
    sub = parser.add_subparsers(dest="command")
    mp = sub.add_parser("worker-map-pool")
    mp.add_argument("folder", type=Path)
    mp.add_argument("--repeats", type=int, default=REPEATS)
    mp.add_argument("--save", type=Path, default=None)
    nv = sub.add_parser("worker-naive")
    nv.add_argument("folder", type=Path)
    nv.add_argument("--cells", type=int, default=NAIVE_CELLS)
    args = parser.parse_args(argv)
    if args.command == "worker-map-pool":
        print(json.dumps(worker_map_pool(args.folder, args.repeats, args.save)))
    elif args.command == "worker-naive":
        print(json.dumps(worker_naive(args.folder, args.cells)))
    else:
        print(json.dumps(run(), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
