"""Start-up import time of the app, with and without Dask installed.

Run standalone with ``python -m benchmarks.import_time``: prints the table, rewrites the
``bench-import-time`` section of BENCHMARKS.md and saves the raw numbers as JSON.

anndata 0.12 imports ``dask.array`` at import time whenever ``importlib.util.find_spec("dask")``
finds it (``anndata/compat/__init__.py``), so installing Dask slows every ``import anndata``.
Each figure is the median of fresh interpreter processes, run interleaved so the two
conditions share the machine's load: "as installed" is this environment (Dask present), "Dask
not installed" is the same environment with ``sys.modules["dask"] = None`` (and the same for
``distributed``) set first, which makes ``find_spec`` report the package missing, exactly as
an environment installed from requirements.txt (no Dask) does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("anndata", "scembed_core.io", "scembed_app.cached")
HIDE = "import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
CONDITIONS = {"as installed (Dask present)": "", "Dask not installed": HIDE}


def time_import(module: str, prefix: str) -> tuple[float, bool]:
    """Seconds to import ``module`` in a fresh process, and whether dask.array was loaded."""
    code = (
        f"{prefix}import sys, time; started = time.perf_counter(); import {module}; "
        "print(time.perf_counter() - started, 'dask.array' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    seconds, dask = out.stdout.split()[-2:]
    return float(seconds), dask == "True"


def main(argv: list[str] | None = None) -> dict:
    """Measure and print the figures; returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from . import report as rp

    facts = rp.machine_facts()
    figures: dict = {"repeats": args.repeats, "facts": facts, "modules": {}}
    rows = []
    for module in MODULES:
        for prefix in CONDITIONS.values():
            time_import(module, prefix)  # warm the file cache
        times: dict[str, list[float]] = {name: [] for name in CONDITIONS}
        loaded: dict[str, bool] = {}
        for _ in range(args.repeats):
            for name, prefix in CONDITIONS.items():
                seconds, dask = time_import(module, prefix)
                times[name].append(seconds)
                loaded[name] = dask
        medians = {name: statistics.median(values) for name, values in times.items()}
        figures["modules"][module] = {"times_s": times, "median_s": medians, "dask": loaded}
        with_dask, without = medians.values()
        rows.append(
            (
                f"`import {module}`",
                f"{with_dask:.2f} s",
                f"{without:.2f} s",
                f"{with_dask - without:+.2f} s",
                "yes" if next(iter(loaded.values())) else "no",
            )
        )
    table = rp.table(
        rows,
        ["import (fresh process)", *CONDITIONS, "difference", "dask.array loaded when present"],
    )
    command = "python -m benchmarks.import_time"
    section = "\n\n".join(
        [
            "## Start-up imports with and without Dask",
            rp.command(command),
            rp.facts_block(facts),
            f"Median of {args.repeats} fresh processes per cell, the two conditions interleaved. "
            "anndata imports `dask.array` whenever Dask is installed; requirements.txt (the "
            "hosted app) therefore leaves Dask out: it is the `atlas` extra and in "
            'requirements-dev.txt. "Dask not installed" sets `sys.modules["dask"] = None` '
            "first, which is what anndata's `find_spec` check sees in an environment without it.",
            table,
        ]
    )
    print(table)
    rp.replace_section("bench-import-time", section)
    print("results:", rp.save_results("import_time", figures))
    return figures


if __name__ == "__main__":
    main()
