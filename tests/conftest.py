"""Shared fixtures: planted-structure data (to assert real quality) and the real data paths."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GRANJA = SHARED_DATA / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
PBMC_TINY = SHARED_DATA / "geniml_pbmc_hg38_tiny" / "pbmc_hg38_tiny.h5ad"


def planted_dataset(
    n_types: int = 4,
    cells_per_type: int = 80,
    regions_per_type: int = 40,
    n_background: int = 40,
    p_marker: float = 0.5,
    p_background: float = 0.05,
    seed: int = 0,
) -> ad.AnnData:
    """Cells of ``n_types`` types; each type opens its own block of marker regions.

    Regions are 500 bp windows on chr1 spaced 1 kb apart, so peaks can be shifted to test
    overlap mapping. ``obs["cell_type"]`` holds the planted truth.
    """
    rng = np.random.default_rng(seed)
    n_regions = n_types * regions_per_type + n_background
    n_cells = n_types * cells_per_type
    types = np.repeat(np.arange(n_types), cells_per_type)
    prob = np.full((n_cells, n_regions), p_background)
    for t in range(n_types):
        prob[types == t, t * regions_per_type : (t + 1) * regions_per_type] = p_marker
    x = sp.csr_matrix((rng.random(prob.shape) < prob).astype(np.float32))
    starts = np.arange(n_regions) * 1000
    var = pd.DataFrame({"chr": "chr1", "start": starts, "end": starts + 500})
    var.index = [f"chr1_{s}_{s + 500}" for s in starts]
    obs = pd.DataFrame(
        {"cell_type": [f"type{t}" for t in types]}, index=[f"cell{i}" for i in range(n_cells)]
    )
    order = rng.permutation(n_cells)
    return ad.AnnData(x[order], obs=obs.iloc[order], var=var)


@pytest.fixture(scope="session")
def planted() -> ad.AnnData:
    """Planted-structure dataset (4 types x 80 cells)."""
    return planted_dataset()


@pytest.fixture(scope="session")
def planted_reference(planted):
    """A full reference trained on the first 240 planted cells (fast settings)."""
    from scembed_core.train import TrainingParams, train_reference

    params = TrainingParams(
        epochs=30, window=20, vector_size=16, min_count=2, workers=1, alpha=0.05
    )
    return train_reference(
        planted[:240].copy(), label_key="cell_type", params=params, genome="test"
    )


@pytest.fixture(scope="session")
def granja() -> ad.AnnData:
    """The real Granja 2019 bone-marrow data (binarised by the reader)."""
    from scembed_core.io import read_dataset

    assert GRANJA.is_file(), f"real data not found at {GRANJA} (../shared/data beside the repo)"
    return read_dataset(GRANJA)


@pytest.fixture(scope="session", autouse=True)
def workspace_root(tmp_path_factory):
    """App sessions (AppTest and test servers) keep their analyses in a temporary folder.

    Never the user's cache dir: ``SCEMBED_WORKSPACES`` is set for the whole test run unless
    the caller set it already.
    """
    if os.environ.get("SCEMBED_WORKSPACES"):
        yield Path(os.environ["SCEMBED_WORKSPACES"])
        return
    folder = tmp_path_factory.mktemp("workspaces")
    os.environ["SCEMBED_WORKSPACES"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("SCEMBED_WORKSPACES", None)


def shifted_query(planted, shift=200):
    """Held-out planted cells whose peaks are shifted by ``shift`` bp (still overlapping)."""
    query = planted[240:].copy()
    query.var["start"] = query.var["start"] + shift
    query.var["end"] = query.var["end"] + shift
    query.var_names = [
        f"chr1_{s}_{e}" for s, e in zip(query.var["start"], query.var["end"], strict=True)
    ]
    return query


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium (``scripts/screenshots.launch_browser``), one per test module."""
    import sys

    sync_api = pytest.importorskip("playwright.sync_api")
    sys.path.insert(0, str(REPO / "scripts"))
    import screenshots

    with sync_api.sync_playwright() as playwright:
        chromium = screenshots.launch_browser(playwright)
        yield chromium
        chromium.close()
