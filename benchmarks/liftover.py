"""Liftover speed: loading the UCSC hg38 -> hg19 chain, swapping it, lifting 200,000 peaks.

Run standalone with ``python -m benchmarks.liftover``: prints the table, rewrites the
``bench-liftover`` section of BENCHMARKS.md and saves the raw numbers as JSON.
Targets (issue 14): loading the chain <= 1 s; lifting 200,000 peaks <= 1 s once loaded.
The peaks are 500 bp windows at uniformly random positions on hg38 chr1..22, X (seed 0);
~8% of such positions fall in assembly gaps and are dropped as unaligned, more than real
peaks would be, so the drop counts are not a quality figure.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

REPEATS = 5
N_PEAKS = 200_000


def _best(fn, repeats: int = REPEATS) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times), out


def main() -> dict:
    """Measure and print the figures; returns them."""
    from scembed_core.liftover import CHROMOSOME_SIZES, detect_build, lift_regions, read_chain
    from scembed_core.liftover.builds import CHAIN_DIR
    from scembed_core.reference import load_default_reference
    from scembed_core.regions import GenomicRegions

    path = CHAIN_DIR / "hg38ToHg19.over.chain.gz"
    load_min, load_med, chain = _best(lambda: read_chain(path))
    swap_min, swap_med, swapped = _best(chain.swap)
    rng = np.random.default_rng(0)
    names = [f"chr{i}" for i in range(1, 23)] + ["chrX"]
    chrom = rng.choice(names, N_PEAKS)
    sizes = np.array([CHROMOSOME_SIZES["hg38"][c] for c in chrom])
    start = (rng.random(N_PEAKS) * (sizes - 500)).astype(np.int64)
    peaks = GenomicRegions(chrom, start, start + 500)
    fwd_min, fwd_med, fwd = _best(lambda: lift_regions(peaks, chain))
    back_min, back_med, back = _best(lambda: lift_regions(fwd.regions, swapped))
    reference = load_default_reference()
    det_min, det_med, det = _best(
        lambda: detect_build(peaks, reference.model.universe, reference.genome), repeats=3
    )
    figures = {
        "chain": path.name,
        "n_chains": chain.n_chains,
        "n_blocks": chain.n_blocks,
        "load_s": {"min": load_min, "median": load_med},
        "swap_s": {"min": swap_min, "median": swap_med},
        "lift_hg38_to_hg19_200k_s": {"min": fwd_min, "median": fwd_med},
        "lift_hg19_to_hg38_s": {"min": back_min, "median": back_med, "n": fwd.n_lifted},
        "detect_build_200k_s": {"min": det_min, "median": det_med},
        "lifted": fwd.summary(),
        "detected": det.build,
    }
    rows = [
        ("load + parse `hg38ToHg19.over.chain.gz` (`read_chain`)", load_min, load_med),
        ("swap to hg19 -> hg38 (`Chain.swap`, chainSwap)", swap_min, swap_med),
        (f"lift {N_PEAKS:,} peaks hg38 -> hg19 (`lift_regions`)", fwd_min, fwd_med),
        (f"lift the {fwd.n_lifted:,} lifted peaks back, hg19 -> hg38", back_min, back_med),
        (f"`detect_build` on {N_PEAKS:,} peaks (100,000 sampled)", det_min, det_med),
    ]
    from . import report as rp

    facts = rp.machine_facts()
    figures["facts"] = facts
    rows = [(label, f"{best:.3f} s", f"{median:.3f} s") for label, best, median in rows]
    table = rp.table(rows, ["step", f"best of {REPEATS}", "median"])
    lift_ok = "yes" if fwd_med <= 1.0 else "no"
    load_ok = "yes" if load_med + swap_med <= 1.0 else "no"
    section = "\n\n".join(
        [
            "## Liftover: loading the chain and lifting peaks",
            rp.command("python -m benchmarks.liftover"),
            rp.facts_block(facts),
            f"Chain: `{path.name}` (UCSC, shipped in `scembed_core/data/chains`), "
            f"{chain.n_chains:,} chains, {chain.n_blocks:,} blocks. Peaks: {N_PEAKS:,} windows "
            "of 500 bp at uniformly random positions on hg38 chr1-22, X (seed 0); random "
            "positions fall in assembly gaps more often than real peaks, so the drop counts "
            "are not a quality figure. Times are in-process wall times after imports.",
            table,
            f"Targets (issue 14): loading <= 1 s, also with the swap for hg19 -> hg38 "
            f"(median {load_med + swap_med:.2f} s): **{load_ok}**; lifting 200,000 peaks after "
            f"loading <= 1 s (median {fwd_med:.2f} s): **{lift_ok}**. {fwd.describe()}",
        ]
    )
    print(table)
    print()
    print(fwd.describe())
    rp.replace_section("bench-liftover", section)
    print("results:", rp.save_results("liftover", figures))
    return figures


if __name__ == "__main__":
    main()
