"""Dask workers: seconds from starting a local cluster to every worker holding the reference.

Run with ``python -m benchmarks.dask_start`` (``--workers 1,2 --repeats 2``). For each worker
count and each way of opening the reference, a fresh ``LocalCluster`` (processes, one thread
each, as ``project --dask`` starts it) is started, then every worker opens the built-in
reference by path, all at once, as :func:`scembed_core.atlas.project_out_of_core` does before
its first chunk:

* **before**: ``resolve_reference(path)`` on each worker, what a worker did before: the full
  bundle loader (anndata imported, ``cells.h5ad`` parsed, every table read).
* **after**: :func:`scembed_core.atlas._worker.hold_reference`: the bundle opened by path
  with numpy (map and label codes memory-mapped from the compact files, the cell
  embeddings read with h5py), no anndata; workers spawned as before.
* **forkserver**: the same, on the local cluster ``project_out_of_core`` now starts: worker
  processes forked from a forkserver that imported the chunk code once.

All run interleaved in the same session, each in a fresh process. It prints one JSON line per measurement and a
markdown table at the end; the figures in BENCHMARKS.md were copied from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def full_load(path: str) -> dict:
    """The previous worker loader: the whole bundle through anndata (runs on a worker).

    The chunk code's module is imported first, untimed, as unpickling ``project_chunk`` did.
    """
    import scembed_core.atlas._worker  # noqa: F401
    from scembed_core.reference import resolve_reference

    started = time.perf_counter()
    resolve_reference(path)
    return {
        "seconds": time.perf_counter() - started,
        "process_cpu_seconds": time.process_time(),
        "anndata_imported": "anndata" in sys.modules,
    }


@contextmanager
def _spawned(n_workers: int) -> Iterator:
    """A local cluster whose workers are spawned, each importing everything itself."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit="3GiB",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env={"NUMBA_NUM_THREADS": "1"},
    )
    with cluster, Client(cluster) as client:
        yield client


def measure(n_workers: int, how: str) -> dict:
    """Start a local cluster of ``n_workers`` and have each worker hold the reference."""
    from scembed_core.atlas._worker import files_key, hold_reference
    from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_default_reference

    path = str(DEFAULT_REFERENCE_DIR.resolve())
    key = files_key(load_default_reference()) if how != "before" else None
    started = time.perf_counter()
    if how == "forkserver":  # the code's own local cluster (project_out_of_core's)
        from scembed_core.atlas.project import _dask_client

        context = _dask_client(None, n_workers, "3GiB")
    else:
        context = _spawned(n_workers)
    with context as client:
        client.wait_for_workers(n_workers)
        up = time.perf_counter()
        workers = list(client.scheduler_info()["workers"])
        if how != "before":
            futures = [
                client.submit(hold_reference, path, False, key, workers=[w], pure=False)
                for w in workers
            ]
        else:
            futures = [client.submit(full_load, path, workers=[w], pure=False) for w in workers]
        held = client.gather(futures)
        done = time.perf_counter()
    return {
        "how": how,
        "workers": n_workers,
        "start_seconds": up - started,
        "hold_seconds": done - up,
        "total_seconds": done - started,
        "worker_load_seconds": [round(h["seconds"], 3) for h in held],
        "worker_cpu_seconds": [round(h["process_cpu_seconds"], 3) for h in held],
        "anndata_imported": [h["anndata_imported"] for h in held],
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--how",
        default="before,after,forkserver",
        help="comma-separated: before, after, forkserver",
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1])))
        return 0
    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        for _ in range(args.repeats):
            for how in args.how.split(","):
                done = subprocess.run(  # a fresh process each: no forkserver left running
                    [sys.executable, "-m", "benchmarks.dask_start", "--one", str(n), how],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(done.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(
        "\n| workers | how | start (s) | hold reference (s) | total (s) | worker CPU (s) | load |"
    )
    print("|---:|:---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['how']} | {r['start_seconds']:.2f} | {r['hold_seconds']:.2f} "
            f"| **{r['total_seconds']:.2f}** | {max(r['worker_cpu_seconds']):.2f} "
            f"| {r['load_average']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
