"""QC before projection: promoter fraction on real data, TSS enrichment and FRiP from
fragments over the real gene annotation, thresholds and the record of filtered cells."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from scembed_core.errors import ParameterError
from scembed_core.genes import PROMOTER_BP, load_annotation
from scembed_core.qc import (
    QC_KEY,
    QCThresholds,
    cell_qc,
    filter_cells,
    promoter_peaks,
    qc_pass,
    tss_enrichment,
)


@pytest.fixture(scope="module")
def granja_qc(granja):
    return cell_qc(granja, genome="hg19", regions_in_universe=np.arange(granja.n_obs) % 7)


def test_promoter_fraction_on_real_cells(granja, granja_qc):
    table = granja_qc
    assert list(table.columns) == ["n_peaks", "regions_in_universe", "promoter_fraction"]
    assert table.index.equals(granja.obs_names)
    np.testing.assert_array_equal(table["n_peaks"], np.diff(granja.X.indptr))
    peaks = promoter_peaks(granja, "hg19")
    # real scATAC-seq: a cell's open peaks are far richer in promoters than the peak set
    assert table["promoter_fraction"].median() > 2 * peaks.mean()
    # independent check of three cells: distance of each peak to every TSS on its chromosome
    genes = load_annotation("hg19")
    for cell in (0, 1, 2):
        cols = granja.X[cell].indices
        var = granja.var.iloc[cols]
        hits = 0
        for chrom, start, end in zip(var["chr"], var["start"], var["end"], strict=True):
            tss = genes.loc[genes["chrom"] == chrom, "tss"].to_numpy()
            gap = np.maximum(np.maximum(start - tss, tss - (end - 1)), 0)
            hits += bool((gap <= PROMOTER_BP).any())
        assert table["promoter_fraction"].iloc[cell] == pytest.approx(hits / len(cols))


def test_no_annotation_no_promoter_column(granja):
    assert "promoter_fraction" not in cell_qc(granja[:50], genome="mm10")
    assert "promoter_fraction" not in cell_qc(granja[:50])


def write_fragments(path, rows):
    frame = pd.DataFrame(rows, columns=["chr", "start", "end", "barcode"]).assign(count=1)
    with gzip.open(path, "wt") as handle:
        frame.to_csv(handle, sep="\t", header=False, index=False)
    return path


def test_tss_enrichment_separates_tss_cells_from_flat_ones(tmp_path):
    genes = load_annotation("hg19")
    chr1 = genes[genes["chrom"] == "chr1"]
    rng = np.random.default_rng(0)
    tss = rng.choice(chr1["tss"].to_numpy(), 400)
    rows = []
    # "good": half its fragments span a TSS with both ends within 40 bp; half anywhere
    lo, hi = tss - rng.integers(0, 40, 400), tss + rng.integers(1, 40, 400)
    rows += [("chr1", s, e, "good") for s, e in zip(lo, hi, strict=True)]
    flat = rng.integers(1_000_000, 240_000_000, 1200)
    rows += [("chr1", s, s + 180, "good") for s in flat[:400]]
    rows += [("1", s, s + 180, "flat") for s in flat[400:]]  # Ensembl naming works too
    rows += [("chrUn_x", 5, 100, "flat")]
    path = write_fragments(tmp_path / "fragments.tsv.gz", rows)
    whole = tss_enrichment(path, "hg19")
    chunked = tss_enrichment(path, "hg19", chunksize=97)
    pd.testing.assert_frame_equal(whole.sort_index(), chunked.sort_index())
    assert whole.loc["good", "tss_insertions"] >= 800
    assert whole.loc["good", "tss_enrichment"] > 20
    assert whole.loc["flat", "tss_enrichment"] < 5
    assert whole.loc["flat", "n_fragments_total"] == 801
    only = tss_enrichment(path, "hg19", barcodes=pd.Index(["flat"]))
    assert list(only.index) == ["flat"]


def test_frip_and_tss_columns_from_a_fragments_read(planted):
    adata = planted[:6].copy()
    adata.obs["n_fragments"] = [5, 10, 0, 3, 8, 1]
    adata.obs["n_fragments_total"] = [10, 10, 4, 12, 8, 0]
    tss = pd.Series([7.0, 1.0], index=adata.obs_names[[1, 0]])
    table = cell_qc(adata, tss=tss)
    np.testing.assert_allclose(table["frip"], [0.5, 1.0, 0.0, 0.25, 1.0, 0.0])
    np.testing.assert_allclose(table["tss_enrichment"][:2], [1.0, 7.0])
    assert table["tss_enrichment"][2:].isna().all()


def test_thresholds_filter_and_record_every_cell(granja, granja_qc):
    subset = granja[:400].copy()
    table = granja_qc.iloc[:400]
    thresholds = QCThresholds(min_peaks=100, min_promoter_fraction=0.45)
    checks = qc_pass(table, thresholds)
    expected = (table["n_peaks"] >= 100) & (table["promoter_fraction"] >= 0.45)
    np.testing.assert_array_equal(checks["pass"], expected)
    kept = filter_cells(subset, table, thresholds)
    record = kept.uns[QC_KEY]
    assert kept.n_obs == int(expected.sum()) == record["n_kept"]
    assert record["n_cells"] == 400 and record["n_filtered"] == 400 - kept.n_obs > 0
    assert record["thresholds"] == {"min_peaks": 100, "min_promoter_fraction": 0.45}
    dropped = set(subset.obs_names[~expected.to_numpy()])
    assert set(record["filtered_cells"]) == dropped
    reasons = dict(zip(record["filtered_cells"], record["filtered_reasons"], strict=True))
    for cell in list(dropped)[:20]:
        want = [
            rule
            for rule, bad in (
                ("min_peaks", table.loc[cell, "n_peaks"] < 100),
                ("min_promoter_fraction", table.loc[cell, "promoter_fraction"] < 0.45),
            )
            if bad
        ]
        assert reasons[cell] == ";".join(want)
    np.testing.assert_array_equal(kept.obs["qc_n_peaks"], table["n_peaks"][expected])
    assert subset.n_obs == 400, "the input is not changed"
    with pytest.raises(ParameterError, match="tss_enrichment"):
        qc_pass(table, QCThresholds(min_tss_enrichment=4))
    everyone = filter_cells(subset, table, QCThresholds())
    assert everyone.n_obs == 400 and everyone.uns[QC_KEY]["n_filtered"] == 0


def test_run_json_records_the_filter_and_the_command_line_drops_the_same_cells(
    granja, granja_qc, tmp_path
):
    from scembed_core.qc import drop_recorded_cells
    from scembed_core.runspec import build_run_spec, read_run_spec

    subset = granja[:300].copy()
    kept = filter_cells(subset, granja_qc.iloc[:300], QCThresholds(min_peaks=150))
    doc = build_run_spec(
        reference_spec="default", params={}, n_cells=kept.n_obs, qc=kept.uns[QC_KEY]
    )
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    spec = read_run_spec(path)
    assert spec.qc["filtered_cells"] == list(kept.uns[QC_KEY]["filtered_cells"])
    assert spec.qc["thresholds"] == {"min_peaks": 150}
    again = drop_recorded_cells(subset, spec.qc)
    assert list(again.obs_names) == list(kept.obs_names)
    assert again.uns[QC_KEY]["n_kept"] == kept.n_obs
    assert drop_recorded_cells(subset, None) is subset
    assert "qc" not in build_run_spec(reference_spec="default", params={}), "old files unchanged"
    with pytest.raises(ParameterError, match="qc.filtered_cells"):
        read_run_spec({**doc, "qc": {"filtered_cells": "all"}})


def test_qc_sums_in_blocks_of_rows_equal_the_whole_matrix(granja, granja_qc, monkeypatch):
    """cell_qc makes its 0/1 signal a block of rows at a time (an upload's peak memory):
    the sums are those of the whole matrix, with duplicates, zeros, negatives, empty rows."""
    import scipy.sparse as sp

    from scembed_core import qc

    x = granja.X.tocsr()
    signal = (x > 0).astype(np.float64)
    promoter = promoter_peaks(granja, "hg19").astype(np.float64)
    assert np.array_equal(granja_qc["n_peaks"], np.asarray(signal.sum(axis=1)).ravel())
    expected = np.asarray(signal @ promoter).ravel() / np.maximum(granja_qc["n_peaks"], 1)
    assert np.allclose(granja_qc["promoter_fraction"], expected)
    rows = np.array([0, 0, 0, 2, 2, 3, 5, 5, 5, 5])
    cols = np.array([1, 1, 4, 0, 3, 2, 0, 1, 2, 4])
    vals = np.array([1.0, -1.0, 2.0, 0.0, 3.0, -2.0, 1.0, 1.0, 5.0, 0.5])
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=7))]
    odd = sp.csr_matrix((vals, cols, indptr), shape=(7, 5))  # duplicate (0, 1) sums to 0
    assert not odd.has_canonical_format
    weights = np.array([0.5, 1.0, 2.0, 4.0, 8.0], dtype=np.float32)
    whole = qc._signal_sharing_indices(odd)
    want_counts = np.asarray(whole.sum(axis=1)).ravel()
    want_weighted = np.asarray(whole @ weights).ravel()
    canonical = odd.copy()
    canonical.sum_duplicates()
    for block in (1, 2, 3, 1 << 20):
        monkeypatch.setattr(qc, "SIGNAL_BLOCK_NNZ", block)
        for matrix in (odd, canonical, canonical.toarray()):
            counts, weighted = qc._signal_row_sums(matrix, weights)
            assert np.array_equal(counts, want_counts)
            assert np.array_equal(weighted, want_weighted)
    assert list(want_counts) == [1, 0, 1, 0, 0, 4, 0]
