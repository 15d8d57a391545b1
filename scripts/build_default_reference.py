"""Build the built-in default reference and the demo query from ../shared/data (``make reference``).

Data: Granja et al. 2019 (Nat Biotechnol 37:1458), healthy bone marrow scATAC-seq, donor
BMMC_D6T1, 10,335 cells x 10,000 peaks (hg19), 16 labelled cell types; see
../shared/data/granja2019_bmmc/PROVENANCE.md. A random 15% of the cells (seed 0) is held
out of training and written as the demo query; the rest trains the reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from scembed_core.io import read_dataset
from scembed_core.reference import DEFAULT_REFERENCE_DIR, DEMO_QUERY_PATH, save_reference
from scembed_core.train import TrainingParams, train_reference

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
HOLDOUT_FRACTION = 0.15
SEED = 0
#: Window 50 instead of the paper's 5: cells are bags of regions shuffled every epoch, so a
#: wide window uses more co-accessibility pairs per pass; measured in BENCHMARKS.md.
PARAMS = TrainingParams(epochs=100, window=50, vector_size=100, min_count=5, seed=SEED)


def split_cells(n_cells: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (reference, held-out query) cells, sorted."""
    order = np.random.default_rng(seed).permutation(n_cells)
    n_query = int(round(fraction * n_cells))
    return np.sort(order[n_query:]), np.sort(order[:n_query])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--epochs", type=int, default=PARAMS.epochs)
    args = parser.parse_args()
    params = TrainingParams(**{**PARAMS.to_dict(), "epochs": args.epochs})

    adata = read_dataset(args.source)
    reference_idx, query_idx = split_cells(adata.n_obs, HOLDOUT_FRACTION, SEED)
    query = adata[query_idx].copy()
    keep_obs = ["cell_type", "bio_classification", "Group", "FRIP", "TotalReads"]
    query.obs = query.obs[[c for c in keep_obs if c in query.obs]]
    query.var = query.var[["chr", "start", "end"]]
    query.obsm.clear()
    query.uns.clear()
    DEMO_QUERY_PATH.parent.mkdir(parents=True, exist_ok=True)
    query.write_h5ad(DEMO_QUERY_PATH, compression="gzip")

    started = time.perf_counter()
    reference = train_reference(
        adata[reference_idx].copy(),
        label_key=["cell_type", "bio_classification"],
        params=params,
        genome="hg19",
        name="Granja 2019 bone marrow (BMMC_D6T1, hg19)",
        source=(
            "Granja et al. 2019, Nat Biotechnol 37:1458, GEO GSE139369; healthy BMMC donor "
            "BMMC_D6T1; 10,000 random peaks of the Granja union peak set (epiCHAOS subset); "
            "see ../shared/data/granja2019_bmmc/PROVENANCE.md"
        ),
    )
    holdout = {
        "fraction": HOLDOUT_FRACTION,
        "seed": SEED,
        "n_query_cells": int(len(query_idx)),
        "demo_query": DEMO_QUERY_PATH.name,
    }
    manifest = {
        **reference.manifest,
        "build_seconds": time.perf_counter() - started,
        "holdout": holdout,
    }
    reference = dataclasses.replace(reference, manifest=manifest)
    if DEFAULT_REFERENCE_DIR.exists():
        shutil.rmtree(DEFAULT_REFERENCE_DIR)
    # build_reference already stored the Unknown rule and coverage curve (manifest "trust",
    # as scripts/add_trust_calibration.py adds them to an existing bundle)
    save_reference(reference, DEFAULT_REFERENCE_DIR)  # map.json + arrays, no pickle
    sizes = {p.name: p.stat().st_size for p in DEFAULT_REFERENCE_DIR.iterdir()}
    print(json.dumps({"seconds": reference.manifest["build_seconds"], "bytes": sizes}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
