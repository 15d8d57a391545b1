"""Evidence benchmark: canonical markers per lineage on the demo, and markers + gene activity cost.

    PYTHONPATH=. PYTHONHASHSEED=0 nice -n 10 python -m benchmarks.evidence [--cells 100000]

1. For every canonical marker of the built-in reference (its manifest's ``marker_genes``,
   genes whose body + 2 kb upstream holds a universe region), the fraction of demo cells
   with an open peak in the gene's window per lineage (the manifest's ``lineages``), and
   which lineage is most open. **The demo query is held-out cells of the reference's own
   donor**, so this shows the signal is there, not how a new donor fares.
2. Time and peak memory of ``rank_regions_table`` (markers with nearest genes) and
   ``gene_activity`` on the demo (1,550 cells x 10,000 peaks) and on a resampled query
   (demo cells drawn with replacement), each in a fresh process; memory is the peak RSS
   minus the RSS once the input is loaded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def _measure(n_cells: int) -> dict:
    import resource

    import anndata as ad
    import psutil

    from scembed_core.gene_activity import gene_activity
    from scembed_core.genes import load_annotation
    from scembed_core.markers import rank_regions_table, regions_of
    from scembed_core.reference import DEMO_QUERY_PATH

    load_annotation("hg19")
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    if n_cells != demo.n_obs:
        rows = np.random.default_rng(0).integers(0, demo.n_obs, n_cells)
        demo = ad.AnnData(demo.X[rows], obs=demo.obs.iloc[rows].reset_index(drop=True),
                          var=demo.var)  # fmt: skip
        demo.obs_names = [f"c{i}" for i in range(n_cells)]
    groups = demo.obs["cell_type"].astype(str).to_numpy()
    base = psutil.Process().memory_info().rss
    started = time.perf_counter()
    rank_regions_table(demo.X, groups, regions_of(demo), genome="hg19", n_top=50)
    markers_s = time.perf_counter() - started
    started = time.perf_counter()
    activity = gene_activity(demo, "hg19")
    activity_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "cells": int(demo.n_obs), "peaks": int(demo.n_vars), "input_nnz": int(demo.X.nnz),
        "markers_s": round(markers_s, 2), "gene_activity_s": round(activity_s, 2),
        "activity_nnz": int(activity.X.nnz),
        "peak_above_input_gib": round(max(peak - base, 0) / 2**30, 3),
    }  # fmt: skip


def lineage_table() -> pd.DataFrame:
    """Fraction of demo cells open per canonical marker and lineage; the most open lineage."""
    import anndata as ad

    from scembed_core.gene_activity import gene_activity
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

    reference = load_default_reference()
    lineages = reference.manifest["lineages"]
    markers = reference.manifest["marker_genes"]
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    genes = [g for lineage in markers.values() for g in lineage]
    activity = gene_activity(demo, "hg19", genes=genes)
    lineage = demo.obs["cell_type"].astype(str).map(lineages).to_numpy()
    frac = pd.DataFrame(activity.layers["counts"].toarray() > 0, columns=genes)
    by = frac.groupby(lineage).mean()
    rows = []
    for expected, names in markers.items():
        for gene in names:
            col = by[gene].sort_values(ascending=False)
            rows.append({
                "gene": gene, "canonical lineage": expected, "most open in": col.index[0],
                "open there": f"{col.iloc[0]:.1%}", "next": f"{col.index[1]} {col.iloc[1]:.1%}",
                "peaks": int(activity.var.loc[gene, "n_peaks"]),
            })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="*", default=[1550, 100_000])
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(_measure(args.one)))
        return
    table = lineage_table()
    print("| " + " | ".join(table.columns) + " |")
    print("|" + " --- |" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(map(str, row)) + " |")
    agree = (table["canonical lineage"] == table["most open in"]).sum()
    print(f"\n{agree} of {len(table)} markers are most open in their canonical lineage.\n")
    for n in args.cells:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.evidence", "--one", str(n)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
