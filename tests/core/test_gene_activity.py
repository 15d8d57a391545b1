"""Gene activity equals a hand computation; real genes light up in their lineage; the CLI writes it."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scembed_core as se
from scembed_core.errors import ParameterError
from scembed_core.reference import DEMO_QUERY_PATH

GENES = pd.DataFrame(
    {"chrom": ["chr1", "chr1", "chr2"], "start": [1000, 5000, 100], "end": [2000, 6000, 200],
     "strand": ["+", "-", "+"], "symbol": ["G1", "G2", "G3"], "gene_id": ["11", "22", "33"]}
)  # fmt: skip
# windows (body + 2 kb upstream): G1 [0, 2000), G2 [5000, 8000), G3 [0, 200) on chr2
PEAKS = ["chr1_100_200", "chr1_1900_2100", "chr1_7000_7100", "chr1_2500_2600", "chr1_4900_5001"]
#        G1              G1                G2 (upstream, - strand) none          G2


def test_equals_hand_computation():
    x = sp.csr_matrix(np.array([[2, 1, 0, 0, 0], [0, 0, 3, 1, 1], [0, 0, 0, 0, 0]], np.float32))
    adata = ad.AnnData(x, var=pd.DataFrame(index=PEAKS))
    adata.obs_names = ["c0", "c1", "c2"]
    got = se.tl.gene_activity(adata, genome=GENES)
    assert list(got.var_names) == ["G1", "G2", "G3"]
    assert list(got.var["gene_id"]) == ["11", "22", "33"]
    assert list(got.var["n_peaks"]) == [2, 2, 0]
    counts = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]], np.float32)
    np.testing.assert_array_equal(got.layers["counts"].toarray(), counts)
    # log1p(count / open peaks of the cell * 10,000): c0 has 2 open peaks, c1 has 3
    expected = np.log1p(counts / np.array([[2], [3], [1]]) * 10_000)
    np.testing.assert_allclose(got.X.toarray(), expected, rtol=1e-6)
    assert sp.issparse(got.X)
    shorter = se.tl.gene_activity(adata, genome=GENES, upstream=0, drop_empty=True)
    # without the upstream extension G1 loses the peak 900 bp upstream of its TSS and G2 the
    # one 1 kb upstream of its (- strand) TSS
    assert list(shorter.var_names) == ["G1", "G2"] and list(shorter.var["n_peaks"]) == [1, 1]
    with pytest.raises(ParameterError, match="NOPE"):
        se.tl.gene_activity(adata, genome=GENES, genes=["NOPE"])


def test_demo_lineage_genes_and_cli(tmp_path):
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    genes = ["CD3E", "GATA2", "EBF1"]
    got = se.tl.gene_activity(demo, genome="hg19", genes=genes)
    assert list(got.var["symbol"]) == genes and got.shape == (demo.n_obs, 3)
    frac = pd.DataFrame(got.layers["counts"].toarray() > 0, columns=genes)
    lineage = demo.obs["cell_type"].astype(str).str.split(".").str[0].to_numpy()
    by = frac.groupby(lineage).mean()
    assert by["CD3E"][["CD4", "CD8"]].min() > 3 * by["CD3E"][["CD14", "GMP", "B"]].max()
    assert by["EBF1"]["B"] == by["EBF1"].max()
    from scembed_core.cli import main

    small = tmp_path / "q.h5ad"
    demo[:300].copy().write_h5ad(small)
    out, genes_out = tmp_path / "out.h5ad", tmp_path / "genes.h5ad"
    markers = tmp_path / "markers.csv"
    code = main(["project", str(small), "--out", str(out), "--gene-activity", str(genes_out),
                 "--markers", str(markers)])  # fmt: skip
    assert code == 0
    written = ad.read_h5ad(genes_out)
    assert written.n_obs == 300 and "CD3E" in written.var_names
    assert "scembed_cluster" in written.obs and written.var["gene_id"].loc["CD3E"] == "916"
    table = pd.read_csv(markers)
    assert {"group", "region", "gene", "location", "pval_adj"} <= set(table.columns)
    assert table["gene"].notna().mean() > 0.9  # hg19 genes near the markers
    scanpy_reads_and_plots(out, table)


def scanpy_reads_and_plots(path, table):
    """The exported .h5ad as scanpy users expect: embedding plot, rank_genes_groups_df."""
    sc = pytest.importorskip("scanpy")
    import matplotlib

    matplotlib.use("Agg")
    adata = sc.read_h5ad(path)
    sc.pl.embedding(adata, basis="scembed_umap", color="scembed_label", show=False)
    group = str(table["group"].iloc[0])
    df = sc.get.rank_genes_groups_df(adata, group=group)
    assert df["names"].iloc[0] == table["region"].iloc[0]
    assert {"pct_nz_group", "pct_nz_reference", "pvals_adj"} <= set(df.columns)
    clusters = adata.uns["scembed"]["scembed_cluster_label"]["cluster_table"]
    assert "markers_agree" in clusters  # the second opinion
    stored = adata.uns["scembed"]["markers"]
    assert list(stored["region"][:5]) == list(table["region"][:5])
