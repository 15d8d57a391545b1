"""``python -m benchmarks.qc_progress``: QC speed, and the longest silence of a training run.

1. **QC on the Data page**: :func:`scembed_core.qc.cell_qc` (peaks, reference regions,
   promoter fraction with the hg19 annotation) on the real Granja cells, against the
   same-run baseline the page already pays, mapping the peaks onto the universe
   (:func:`scembed_core.project.compute_coverage`).
2. **TSS enrichment** from a fragments file (2 million fragments: a quarter around real hg19
   TSSs, the rest spread over chr1-22), against the same-run baseline of reading that file
   over the built-in universe (:func:`scembed_core.io.read_fragments`).
3. **Progress while training** (the Train page): a reference trained on real cells with the
   page's callback; the longest time between two progress messages, and in which stage.

Prints a Markdown section for BENCHMARKS.md (no file is written but the fragments, in a
temporary folder).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

GRANJA = (
    Path(__file__).resolve().parents[2] / "shared/data/granja2019_bmmc/granja2019_bmmc_D6T1.h5ad"
)


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def fragments_file(folder: Path, n: int, n_cells: int, seed: int = 0) -> Path:
    from scembed_core.genes import load_annotation

    rng = np.random.default_rng(seed)
    genes = load_annotation("hg19")
    near = n // 4
    rows = genes.sample(near, replace=True, random_state=seed)
    chrom, tss = rows["chrom"].to_numpy(), rows["tss"].to_numpy()
    start = np.concatenate(
        [tss - rng.integers(0, 150, near), rng.integers(1_000_000, 50_000_000, n - near)]
    )
    chroms = np.concatenate([chrom, rng.choice([f"chr{i}" for i in range(1, 23)], n - near)])
    frame = pd.DataFrame(
        {
            "chr": chroms,
            "start": start,
            "end": start + rng.integers(60, 400, n),
            "barcode": np.char.add("cell", rng.integers(0, n_cells, n).astype(str)),
            "count": 1,
        }
    )
    path = folder / "fragments.tsv.gz"
    with gzip.open(path, "wt", compresslevel=1) as handle:
        frame.to_csv(handle, sep="\t", header=False, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", type=int, default=2_000_000)
    parser.add_argument("--train-cells", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from scembed_core.io import read_dataset, read_fragments
    from scembed_core.project import compute_coverage
    from scembed_core.qc import cell_qc, tss_enrichment
    from scembed_core.reference import load_default_reference
    from scembed_core.train import TrainingParams, train_reference

    load = os.getloadavg()
    reference = load_default_reference()
    adata = read_dataset(GRANJA)
    t_cov, coverage = best(lambda: compute_coverage(adata, reference.model), args.repeats)
    cell_qc(adata[:10].copy(), genome="hg19")  # annotation read once (cached per process)
    t_qc, table = best(
        lambda: cell_qc(adata, genome="hg19", regions_in_universe=coverage.n_regions_per_cell),
        args.repeats,
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = fragments_file(Path(tmp), args.fragments, 2000)
        t_read, _ = best(lambda: read_fragments(path, reference.model.universe), 1)
        t_tss, tss = best(lambda: tss_enrichment(path, "hg19"), 1)

    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(adata.n_obs, args.train_cells, replace=False))
    marks: list[tuple[float, str]] = []
    started = time.perf_counter()
    train_reference(
        adata[cells].copy(),
        label_key="cell_type",
        params=TrainingParams(epochs=2, workers=2, window=50),
        progress=lambda f, m: marks.append((time.perf_counter() - started, m)),
    )
    total = time.perf_counter() - started
    gaps = [(b[0] - a[0], a[1]) for a, b in zip(marks, marks[1:], strict=False)]
    gap, during = max(gaps)
    layout = sum("layout epoch" in m for _, m in marks)

    print("## `python -m benchmarks.qc_progress`: QC before projection, and training progress\n")
    print("```bash\nnice -n 10 .venv/bin/python -m benchmarks.qc_progress\n```\n")
    print("| step | work | time | same-run baseline | ratio |")
    print("|:---|:---|---:|:---|---:|")
    print(
        f"| `cell_qc` (peaks, reference regions, promoter fraction, hg19) | "
        f"{adata.n_obs:,} real cells x {adata.n_vars:,} peaks | {t_qc:.2f} s | peaks -> universe "
        f"mapping (`compute_coverage`), {t_cov:.2f} s | {t_qc / t_cov:.2f}x |"
    )
    print(
        f"| `tss_enrichment` | {args.fragments:,} fragments, {len(tss):,} barcodes | "
        f"{t_tss:.2f} s ({args.fragments / t_tss / 1e6:.2f} M fragments/s) | reading the same "
        f"file over the universe (`read_fragments`), {t_read:.2f} s | {t_tss / t_read:.2f}x |"
    )
    print(
        f"\nTraining a reference on {args.train_cells:,} real cells (2 epochs, window 50, "
        f"2 workers) took {total:.1f} s with {len(marks)} progress messages "
        f"({layout} of them during the map's layout epochs); the longest time without a new "
        f'message was **{gap:.1f} s**, after "{during}". Median promoter fraction '
        f"{table['promoter_fraction'].median():.2f}.\n"
    )
    print(
        f"- Load average at start: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; other "
        f"developers' jobs shared the 2-core machine, so compare the ratios, not seconds.\n"
        f"- {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs."
    )


if __name__ == "__main__":
    main()
