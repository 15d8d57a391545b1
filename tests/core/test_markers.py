"""Marker regions: planted markers come first, the closed form equals scanpy, scanpy reads it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scembed_core as se
from scembed_core.errors import ParameterError
from scembed_core.markers import benjamini_hochberg
from tests.conftest import planted_dataset

# a hand-made annotation on chr1: a + gene whose TSS sits in type0's marker block
GENES = pd.DataFrame(
    {"chrom": ["chr1", "chr1"], "start": [5_200, 60_000], "end": [30_000, 90_000],
     "strand": ["+", "-"], "symbol": ["MARK0", "FAR"], "gene_id": ["1", "2"]}
)  # fmt: skip


@pytest.fixture(scope="module")
def planted_small():
    return planted_dataset(n_types=3, cells_per_type=60, regions_per_type=20, n_background=30)


def test_planted_markers_are_top_ranked(planted_small):
    adata = planted_small.copy()
    se.tl.rank_regions(adata, groupby="cell_type", genome=GENES, n_top=20)
    table = adata.uns["scembed"]["markers"]
    assert list(table.columns[:3]) == ["group", "rank", "region"]
    for t in range(3):
        top = table[table["group"] == f"type{t}"]
        block = {f"chr1_{s}_{s + 500}" for s in range(t * 20_000, (t + 1) * 20_000, 1000)}
        assert set(top["region"]) == block  # the 20 planted regions, and only them
        assert (top["pct_in"] > 0.25).all() and (top["pct_out"] < 0.15).all()
        assert (top["logfoldchange"] > 1.5).all() and (top["pval_adj"] < 0.05).all()
    first = table[(table["group"] == "type0") & (table["region"] == "chr1_5000_5500")].iloc[0]
    assert (first["gene"], first["location"], first["tss_distance"]) == ("MARK0", "promoter", 0)
    params = adata.uns["scembed"]["rank_regions"]["params"]
    assert params["groupby"] == "cell_type" and params["binarised"]


def test_closed_form_equals_scanpy(planted_small):
    sc = pytest.importorskip("scanpy")
    adata = planted_small.copy()
    adata.X = adata.X.multiply(3).tocsr()  # counts: both paths binarise the same way
    se.tl.rank_regions(adata, groupby="cell_type", n_genes=adata.n_vars)
    ours = sc.get.rank_genes_groups_df(adata, group=None).set_index(["group", "names"])
    check = planted_small.copy()
    sc.tl.rank_genes_groups(check, "cell_type", method="wilcoxon", pts=True, key_added="ref")
    theirs = sc.get.rank_genes_groups_df(check, group=None, key="ref").set_index(["group", "names"])
    theirs = theirs.loc[ours.index]
    np.testing.assert_allclose(ours["scores"], theirs["scores"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours["pvals"], theirs["pvals"], rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(ours["pvals_adj"], theirs["pvals_adj"], rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(ours["pct_nz_group"], theirs["pct_nz_group"], rtol=1e-6)
    np.testing.assert_allclose(ours["pct_nz_reference"], theirs["pct_nz_reference"], rtol=1e-6)


def test_tie_corrected_equals_scanpy(planted_small):
    sc = pytest.importorskip("scanpy")
    adata = planted_small.copy()
    se.tl.rank_regions(adata, groupby="cell_type", n_genes=adata.n_vars, tie_correct=True)
    check = planted_small.copy()
    sc.tl.rank_genes_groups(check, "cell_type", method="wilcoxon", tie_correct=True, key_added="r")
    for group in ("type0", "type2"):
        ours = sc.get.rank_genes_groups_df(adata, group).set_index("names")["scores"]
        theirs = sc.get.rank_genes_groups_df(check, group, key="r").set_index("names")["scores"]
        np.testing.assert_allclose(ours, theirs.loc[ours.index], rtol=1e-5, atol=1e-5)


def test_bh_and_bad_input():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    adata = planted_dataset(n_types=2, cells_per_type=5, regions_per_type=2, n_background=2)
    with pytest.raises(ParameterError, match="no 'nope'"):
        se.tl.rank_regions(adata, groupby="nope")
    with pytest.raises(ParameterError, match="enough cells"):
        se.tl.rank_regions(adata, groupby="cell_type", min_cells=50)
    adata.X = sp.csr_matrix(adata.X.shape, dtype=np.float32)  # nothing open: scores 0
    se.tl.rank_regions(adata, groupby="cell_type")
    assert (adata.uns["scembed"]["markers"]["score"] == 0).all()
