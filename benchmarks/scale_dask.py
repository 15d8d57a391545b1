"""Atlas-scale benchmark of the out-of-core (Dask) path: project and annotate 1,000,000 cells.

Run with ``make bench-atlas`` (``python -m benchmarks.scale_dask``); ``--render JSON``
rewrites the section from saved results without measuring again.

The dataset is grown by resampling, with replacement, the 10,335 real cells of Granja 2019
BMMC_D6T1 (../shared/data/granja2019_bmmc): every generated cell is an exact copy of a real
cell's peaks, under a new unique barcode. The generator writes the CSR ``.h5ad`` in blocks
of 50,000 cells with h5py, so it never holds the big matrix. The 1M-cell file is then
projected, labelled, placed on the reference map and clustered by the out-of-core path
(:mod:`scembed_core.atlas`) on a local cluster of 2 worker processes x 1 thread, the size
of this machine. For the growth curve the in-memory path (``read_dataset`` + ``project`` +
``transfer_labels``) is timed at 10k and 100k cells and the Dask path at 100k. Each
measurement runs in a fresh process, so its peak resident memory is its own.

It rewrites the ``bench-atlas`` section of BENCHMARKS.md and saves the raw numbers in
``benchmarks/results/scale_dask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scembed_core.atlas import peak_rss

ROOT = Path(__file__).resolve().parents[1]
GRANJA = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
GiB = 2**30


def _log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def grow_dataset(
    out: Path, n_cells: int, *, source: Path = GRANJA, seed: int = 0, block: int = 50_000
) -> dict:
    """Write an ``n_cells`` CSR ``.h5ad`` by resampling the real cells of ``source``.

    Memory stays bounded by one block: each block's rows are gathered from the (small)
    source matrix and appended to resizable HDF5 datasets.
    """
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    from scembed_core.io import read_dataset

    started = time.perf_counter()
    real = read_dataset(source)
    x = real.X.tocsr()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, real.n_obs, size=n_cells)
    total = int(np.diff(x.indptr)[picks].sum())
    # one index dtype for indptr and indices, as anndata writes them (scipy needs that)
    index = "i4" if total < 2**31 else "i8"
    with h5py.File(out, "w") as handle:
        handle.attrs["encoding-type"] = "anndata"
        handle.attrs["encoding-version"] = "0.1.0"
        group = handle.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array([n_cells, real.n_vars])
        options = {"compression": "gzip", "compression_opts": 1, "chunks": (1 << 18,)}
        data = group.create_dataset("data", (0,), maxshape=(None,), dtype="f4", **options)
        indices = group.create_dataset("indices", (0,), maxshape=(None,), dtype=index, **options)
        indptr = group.create_dataset("indptr", (n_cells + 1,), dtype=index)
        indptr[0] = 0
        nnz = 0
        for begin in range(0, n_cells, block):
            rows = x[picks[begin : begin + block]]
            end = begin + rows.shape[0]
            data.resize((nnz + rows.nnz,))
            indices.resize((nnz + rows.nnz,))
            data[nnz:] = rows.data.astype(np.float32)
            indices[nnz:] = rows.indices
            indptr[begin + 1 : end + 1] = nnz + rows.indptr[1:].astype(np.int64)
            nnz += rows.nnz
        names = real.obs_names.to_numpy()[picks]
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical(real.obs["cell_type"].astype(str).to_numpy()[picks])},
            index=pd.Index([f"{name}#{i}" for i, name in enumerate(names)], dtype=object),
        )
        write_elem(handle, "obs", obs)
        write_elem(handle, "var", real.var[["chr", "start", "end"]])
        write_elem(handle, "obsm", {})
        write_elem(handle, "uns", {"resampled_from": str(source), "seed": seed})
    del obs, names
    check = ad.read_h5ad(out, backed="r")
    assert check.shape == (n_cells, real.n_vars)
    return {
        "path": str(out),
        "n_cells": n_cells,
        "nnz": int(nnz),
        "bytes": out.stat().st_size,
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": peak_rss(),
    }


# --------------------------------------------------------------------------- stages


def _stage_in_memory(path: str) -> dict:
    from scembed_core.io import read_dataset
    from scembed_core.labels.assign import assign_labels
    from scembed_core.project import project
    from scembed_core.reference import load_default_reference

    started = time.perf_counter()
    reference = load_default_reference()
    loaded = time.perf_counter()
    adata = read_dataset(path)
    read = time.perf_counter()
    projection = project(adata, reference)
    projected = time.perf_counter()
    assign_labels(projection.embedding, reference, method="knn", neighbors=projection.neighbors)
    done = time.perf_counter()
    return {
        "n_cells": adata.n_obs,
        "load_reference_seconds": loaded - started,
        "read_seconds": read - loaded,
        "project_seconds": projected - read,
        "labels_seconds": done - projected,
        "seconds": done - loaded,
        "timings": projection.timings,
        "peak_rss_bytes": peak_rss(),
    }


def _stage_dask(path: str, out: str, chunk_size: int, n_workers: int = 2) -> dict:
    from scembed_core.atlas import (
        DEFAULT_WORKER_MEMORY,
        cluster_large,
        open_result,
        project_out_of_core,
    )
    from scembed_core.reference import load_default_reference

    reference = load_default_reference()
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.1 or fraction >= 1.0:
            last[0] = fraction
            _log(f"  {fraction:4.0%} {message}")

    summary = project_out_of_core(
        path,
        reference,
        out,
        chunk_size=chunk_size,
        progress=progress,
        overwrite=True,
        n_workers=n_workers,
    )
    started = time.perf_counter()
    labels = cluster_large(out)
    cluster_seconds = time.perf_counter() - started
    started = time.perf_counter()
    frame = open_result(out, max_points=50_000)
    open_seconds = time.perf_counter() - started
    return {
        "summary": summary,
        "memory_limit": DEFAULT_WORKER_MEMORY,
        "n_workers": n_workers,
        "load_average": os.getloadavg()[0],
        "cluster_seconds": cluster_seconds,
        "n_clusters": int(labels.max()) + 1,
        "open_result_seconds": open_seconds,
        "open_result_rows": len(frame),
        "driver_peak_rss_bytes": peak_rss(),
    }


def _run_stage(*args: str) -> dict:
    """Run one stage in a fresh Python process; returns its JSON result plus wall time."""
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--stage", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- report


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def render(results: dict, command: str) -> str:
    """The BENCHMARKS.md section (markdown, between the scale markers)."""
    big = results["dask"][-1]
    s = big["summary"]
    data = results["datasets"][-1]
    lines = [
        "## `make bench-atlas`: out-of-core projection with Dask",
        "",
        "```",
        command,
        "```",
        "",
        f"Run {results['date']} on {results['machine']} (shared with other jobs, so times are "
        "noisy). Data: "
        f"**{s['n_cells']:,} cells grown by resampling, with replacement, the 10,335 real "
        "cells of Granja 2019 BMMC_D6T1** (`../shared/data/granja2019_bmmc`, seed 0): every "
        "cell is a copy of a real cell's peaks under a new barcode, so throughput and memory "
        "are realistic but label accuracy is not measured here (the copies include the "
        "reference's own training cells). "
        f"CSR `.h5ad`, {data['nnz']:,} non-zeros, {data['bytes'] / 1e9:.2f} GB on disk "
        f"(gzip 1), written by the generator in 50,000-cell blocks in {data['seconds']:.0f} s "
        f"with a peak of {_gib(data['peak_rss_bytes'])}. Reference: the built-in Granja "
        "reference (10,000 regions, 100 dimensions, 8,785 cells).",
        "",
        "Every run E-projects, places cells on the reference UMAP (EV), transfers labels by "
        "kNN (k = 15) and records the mapping distance. The Dask path runs on a local cluster "
        f"of 2 worker processes x 1 thread (memory limit {big['memory_limit']} per worker), "
        f"chunks of {s['chunk_size']:,} cells, and writes a zarr AnnData store; its time "
        "includes starting the cluster and each worker loading the reference (~25 s here), "
        "which the in-memory times leave out (they do include UMAP's numba warm-up).",
        "",
        "| path | cells | time (s) | cells / s | peak memory |",
        "|---|---:|---:|---:|---|",
    ]
    for run in results["in_memory"]:
        lines.append(
            f"| in memory: `read_dataset` + `project` + `transfer_labels` | {run['n_cells']:,} "
            f"| {run['seconds']:.1f} | {run['n_cells'] / run['seconds']:,.0f} "
            f"| {_gib(run['peak_rss_bytes'])} (one process) |"
        )
    for run in results["dask"]:
        r = run["summary"]
        lines.append(
            f"| Dask `project_out_of_core`, {run.get('n_workers', 2)} workers | {r['n_cells']:,} "
            f"| {r['seconds']:.1f} "
            f"| {r['n_cells'] / r['seconds']:,.0f} | each worker "
            f"≤ {_gib(r['max_worker_peak_rss_bytes'])}, driver {_gib(r['driver_peak_rss_bytes'])} |"
        )
    workers = ", ".join(_gib(v) for v in s["worker_peak_rss_bytes"].values())
    lines += [
        "",
        f"At {s['n_cells']:,} cells: {s['seconds']:.0f} s end to end "
        f"({s['timings']['chunks']:.0f} s in the {s['n_chunks']} chunk tasks, "
        f"{s['cells_per_second']:,.0f} cells/s there, cluster start and reference loading "
        f"included; peak mapping {s['timings']['map_peaks']:.1f} s and store set-up "
        f"{s['timings']['prepare_store']:.1f} s on the driver). Peak resident memory per "
        f"worker process: {workers} (stated bound: the {big['memory_limit']} worker memory "
        f"limit; it is set by the chunk size, not by the number of cells). Driver peak: "
        f"{_gib(s['driver_peak_rss_bytes'])} while projecting (reference, peak mapping, the "
        f"obs table), {_gib(big['driver_peak_rss_bytes'])} after clustering. "
        f"`cluster_large` (Louvain on a 50,000-cell subsample + nearest centroid for the rest) "
        f"took {big['cluster_seconds']:.0f} s for {big['n_clusters']} clusters (many, because "
        "the resampled data hold ~5 exact copies of each real cell per 50,000 sampled, which "
        "form tight cliques in the kNN graph; not a quality figure); "
        f"`open_result(max_points=50_000)` read a plotting sample in "
        f"{big['open_result_seconds']:.1f} s.",
        "",
        "Growth: the in-memory path holds the whole matrix and every result at once, so its "
        "memory grows with the cells; the Dask path's per-worker memory is flat in the number "
        "of cells (set by `--chunk-size`) and only the driver's obs table grows.",
    ]
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    """Replace the atlas section of BENCHMARKS.md, keeping every other section."""
    from benchmarks.report import replace_section

    replace_section("bench-atlas", section)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--stage``, one measurement in this process)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--in-memory", default="10000,100000", help="cell counts, comma-separated")
    parser.add_argument("--dask-also", default="100000", help="smaller Dask runs, comma-separated")
    parser.add_argument("--workers", default="2", help="local Dask workers, comma-separated")
    parser.add_argument("--workdir", default=None, help="keep the generated data here")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--render", default=None, help="only render this results JSON")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    command = "make bench-atlas   # = python -m benchmarks.scale_dask: 1M cells, ~10 min"
    if args.stage:
        stage, *rest = args.stage
        if stage == "in-memory":
            result = _stage_in_memory(rest[0])
        else:
            result = _stage_dask(rest[0], rest[1], int(rest[2]), int(rest[3]))
        print(json.dumps(result, default=float))
        return 0
    if args.render:
        section = render(json.loads(Path(args.render).read_text()), command)
        print(section)
        if not args.no_write:
            write_section(section)
        return 0

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="scembed-bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(n) for n in args.in_memory.split(",") if n})
    dask_sizes = sorted({int(n) for n in args.dask_also.split(",") if n} | {args.cells})
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB:.0f} GiB RAM, "
        f"{platform.machine()}, Python {platform.python_version()}",
        "datasets": [],
        "in_memory": [],
        "dask": [],
    }
    try:
        files = {}
        for n in sorted(set(sizes) | set(dask_sizes)):
            path = workdir / f"granja_resampled_{n}.h5ad"
            _log(f"growing {n:,} cells by resampling the real Granja BMMC_D6T1 cells -> {path}")
            results["datasets"].append(grow_dataset(path, n))
            files[n] = path
        for n in sizes:
            _log(f"in-memory project + transfer_labels at {n:,} cells")
            results["in_memory"].append(_run_stage("in-memory", str(files[n])))
        for n in dask_sizes:
            for workers in [int(w) for w in args.workers.split(",")]:
                _log(f"Dask at {n:,} cells, {workers} worker(s), chunks of {args.chunk_size:,}")
                out = workdir / f"granja_resampled_{n}.zarr"
                stage = ("dask", str(files[n]), str(out), str(args.chunk_size), str(workers))
                results["dask"].append(_run_stage(*stage))
                print(json.dumps(results["dask"][-1], default=float), flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    (ROOT / "benchmarks" / "results" / "scale_dask.json").write_text(
        json.dumps(results, indent=1, default=float)
    )
    section = render(results, command)
    print(section)
    if not args.no_write:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
