"""``make bench``: quality on the Granja data, speed and memory, written to BENCHMARKS.md.

Runs :mod:`benchmarks.quality` then :mod:`benchmarks.speed` and rewrites the ``bench``
section of ``BENCHMARKS.md`` (the ``bench-peers`` and ``bench-scale`` sections are kept).
Nothing is cached between runs: every model is trained, every workload generated, by this
command. About 20-25 minutes on 2 cores.

Options (for trying things out; the report says what was used): ``--epochs``, ``--seeds``,
``--no-window-arm``.
"""

from __future__ import annotations

import argparse
import time

from . import lsi_variants, quality, speed
from . import report as rp


def _cpu_seconds() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def headlines(quality_results: dict, speed_results: dict) -> str:
    """The few numbers a reader wants first, each pointing to its table below."""
    import numpy as np

    labels = quality_results["labels"]

    def mean(key: str, metric: str) -> str:
        runs = labels.get(key) or []
        return f"{np.mean([r[metric] for r in runs]):.3f}" if runs else "–"

    lines = ["### Headlines (details and exact commands in the tables below)"]
    parts = [
        f"{name} accuracy {mean(key, 'accuracy')} / macro-F1 {mean(key, 'macro_f1')}"
        for key, name in (
            ("frozen", "(a) built-in scEmbed reference"),
            ("plain", f"(b) scEmbed window 5, {quality_results['epochs']} epochs"),
            ("lsi", "(c) LSI"),
        )
    ]
    lines.append(
        f"- **Label transfer** to the {quality_results['n_query']:,} held-out Granja cells "
        "(16 types, k = 15 cosine vote): " + "; ".join(parts) + "."
    )
    mp, naive = speed_results["map_pool"], speed_results["naive"]
    fused = mp.get("fused_runs") or mp["runs"]
    best = float(np.median([r["total"] for r in fused]))
    three = float(np.median([r["total"] for r in mp["runs"]]))
    n = mp["n_cells"]
    naive_total = naive["seconds_per_cell"] * n + naive["tree_build_seconds"]
    lines.append(
        f"- **Projection** of {n:,} generated cells ({mp['nnz_x']:,} non-zeros) onto a "
        f"{mp['n_universe']:,}-region universe: {best:.2f} s through `project()`'s fused path "
        f"({n / best:,.0f} cells/s), {three:.2f} s as three separate calls, against "
        f"{naive_total:,.0f} s (extrapolated) for a naive per-cell interval tree: "
        f"{rp.ratio(naive_total, best)} faster."
    )
    cli = speed_results["cli"]["runs"]
    lines.append(
        f"- **Command line** on the 1,550-cell demo query (project, cluster, label, write): "
        f"{cli[0]['wall']:.1f} s first run, {cli[-1]['wall']:.1f} s second run, peak RSS "
        f"{rp.gib(max(r['peak_rss'] for r in cli))}."
    )
    build = speed_results["default_reference"].get("build_seconds")
    if build:
        lines.append(
            f"- **Built-in reference build** (`make reference`, 100 epochs, window 50): "
            f"{build / 60:.1f} min (from its manifest)."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__)
    parser.add_argument("--epochs", type=int, default=quality.EPOCHS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(quality.SEEDS))
    parser.add_argument("--no-window-arm", action="store_true", help="skip the window-50 arm")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    facts = rp.machine_facts()
    quality_results = quality.run(args.epochs, tuple(args.seeds), window_arm=not args.no_window_arm)
    speed_results = speed.run(quality_results)
    total = time.perf_counter() - started
    cpu = _cpu_seconds()

    command = "make bench"
    if argv or args.epochs != quality.EPOCHS or args.seeds != list(quality.SEEDS):
        command = "PYTHONPATH=. .venv/bin/python -m benchmarks.run_all " + " ".join(argv or [])
    body = "\n\n".join(
        [
            "## `make bench`: quality, speed and memory",
            rp.command(command),
            f"This run took **{total / 60:.1f} min** of wall time in all (quality "
            f"{quality_results['seconds'] / 60:.1f} min), using {cpu / 60:.1f} min of CPU time "
            "(user + system, this process and its children): with two cores to itself the "
            "wall time would be roughly the CPU time divided by the average number of busy "
            "cores, between 1 and 2. Machine:",
            rp.facts_block(facts),
            headlines(quality_results, speed_results),
            quality.section(quality_results),
            speed.section(speed_results),
        ]
    )
    rp.replace_section("bench", body)
    lsi_variants.main()
    rp.save_results(
        "bench",
        {
            "facts": facts,
            "total_seconds": total,
            "cpu_seconds": cpu,
            "quality": {k: v for k, v in quality_results.items() if k != "confusion"},
            "confusion": {k: v.to_dict() for k, v in quality_results["confusion"].items()},
            "speed": speed_results,
        },
    )
    print(f"wrote {rp.REPORT} in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
