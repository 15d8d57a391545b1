"""Readers round-trip the real Granja 2019 BMMC data through every upload format.

The first 300 cells (all 10,000 peaks) are written by ``tests/formats.py`` as h5ad, 10x
h5, 10x mtx folder, csv/csv.gz/tsv, fragments and archives; each must read back to the
same binary matrix, coordinates and cell names, in the normalised form the engine uses.
"""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from formats import GHOST_BARCODE, UNKNOWN_CONTIG, write_dataset_formats, write_fragments

from scembed_core.errors import InputFormatError, MemoryBudgetError
from scembed_core.io import (
    check_memory_budget,
    default_memory_budget,
    detect_format,
    estimate_dataset_bytes,
    read_dataset,
    read_fragments,
    read_h5ad_checked,
)
from scembed_core.regions import GenomicRegions

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GRANJA = DATA / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
TINY = DATA / "geniml_pbmc_hg38_tiny" / "pbmc_hg38_tiny.h5ad"
N_CELLS = 300

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("io_real_data")]

FORMATS = [
    "h5ad",
    "h5ad_counts_layer",
    "10x_h5",
    "mtx_dir",
    "csv",
    "csv_gz",
    "tsv",
    "fragments",
    "zip",
    "tar_gz",
    "tgz_h5ad",
]


@pytest.fixture(scope="module")
def real() -> ad.AnnData:
    if not GRANJA.exists():
        pytest.skip(f"real data not found at {GRANJA}")
    return ad.read_h5ad(GRANJA)[:N_CELLS].copy()


@pytest.fixture(scope="module")
def files(real, tmp_path_factory) -> dict[str, Path]:
    return write_dataset_formats(real, tmp_path_factory.mktemp("formats"))


@pytest.fixture(scope="module")
def universe(real) -> GenomicRegions:
    return GenomicRegions.from_frame(real.var)


def expected_binary(adata: ad.AnnData) -> sp.csr_matrix:
    x = sp.csr_matrix(adata.X, dtype=np.float32, copy=True)
    x.data = (x.data > 0).astype(np.float32)
    x.eliminate_zeros()
    return x


def same_binary(x: sp.spmatrix, reference: ad.AnnData) -> bool:
    """True if ``x`` is exactly the binarised counts of ``reference``."""
    return (x != expected_binary(reference)).nnz == 0


def assert_contract(adata: ad.AnnData) -> None:
    """The output contract every reader promises."""
    assert type(adata.X) is sp.csr_matrix
    assert adata.X.dtype == np.float32
    assert adata.X.nnz > 0 and np.all(adata.X.data == 1.0)
    assert adata.X.has_canonical_format
    assert list(adata.var.columns[:3]) == ["chr", "start", "end"]
    assert adata.var["start"].dtype == np.int64 and adata.var["end"].dtype == np.int64
    assert all(isinstance(c, str) for c in adata.var["chr"])
    assert (adata.var["start"] < adata.var["end"]).all() and (adata.var["start"] >= 0).all()
    names = (
        adata.var["chr"] + "_" + adata.var["start"].astype(str) + "_" + adata.var["end"].astype(str)
    )
    assert adata.var_names.tolist() == names.tolist()
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    np.testing.assert_array_equal(adata.obs["n_peaks"], np.diff(adata.X.indptr))
    info = adata.uns["scembed_read"]
    assert info["n_obs"] == adata.n_obs and info["n_vars"] == adata.n_vars
    assert info["nnz"] == adata.X.nnz


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_the_real_data(fmt, real, files, universe):
    adata = read_dataset(files[fmt], universe=universe)
    assert_contract(adata)
    assert sorted(adata.obs_names) == sorted(real.obs_names)
    assert adata.var_names.tolist() == real.var_names.tolist()
    np.testing.assert_array_equal(adata.var["chr"], real.var["chr"].astype(str))
    np.testing.assert_array_equal(adata.var["start"], real.var["start"])
    np.testing.assert_array_equal(adata.var["end"], real.var["end"])
    aligned = adata[real.obs_names]
    assert same_binary(aligned.X, real)


def test_formats_are_detected(files):
    kinds = {key: detect_format(path) for key, path in files.items()}
    assert kinds == {
        "h5ad": "h5ad",
        "h5ad_counts_layer": "h5ad",
        "10x_h5": "10x_h5",
        "mtx_dir": "mtx_dir",
        "csv": "csv",
        "csv_gz": "csv",
        "tsv": "csv",
        "fragments": "fragments",
        "zip": "zip",
        "tar_gz": "tar",
        "tgz_h5ad": "tar",
    }


@pytest.mark.parametrize(
    ("fmt", "neutral_name"),
    [
        ("h5ad", "upload.bin"),
        ("10x_h5", "upload.hdf"),
        ("zip", "upload.dat"),
        ("tar_gz", "upload.archive"),
        ("csv_gz", "upload.gz"),
        ("fragments", "upload"),
    ],
)
def test_unknown_extensions_are_sniffed(fmt, neutral_name, real, files, universe, tmp_path):
    target = tmp_path / neutral_name
    shutil.copy(files[fmt], target)
    adata = read_dataset(target, universe=universe)
    assert same_binary(adata[real.obs_names].X, real)


def test_labels_and_metadata_are_kept(real, files):
    from_h5ad = read_dataset(files["h5ad"])
    for column in real.obs.columns:
        assert from_h5ad.obs[column].astype(str).tolist() == real.obs[column].astype(str).tolist()
    np.testing.assert_allclose(from_h5ad.obsm["X_umap_granja2019"], real.obsm["X_umap_granja2019"])
    np.testing.assert_allclose(from_h5ad.var["score"], real.var["score"])
    assert from_h5ad.uns["genome"] == real.uns["genome"]
    from_csv = read_dataset(files["csv"])
    assert from_csv.obs["cell_type"].tolist() == real.obs["cell_type"].astype(str).tolist()


def test_result_writes_to_h5ad_and_reads_back(files, universe, tmp_path):
    for key in ("h5ad", "fragments", "csv"):
        adata = read_dataset(files[key], universe=universe)
        adata.write_h5ad(tmp_path / f"{key}.h5ad")
        again = read_dataset(tmp_path / f"{key}.h5ad")
        assert (again.X != adata.X).nnz == 0
        assert again.obs_names.tolist() == adata.obs_names.tolist()


def test_whole_granja_file_and_geniml_tiny_read():
    if not GRANJA.exists() or not TINY.exists():
        pytest.skip("real data not found")
    full = read_dataset(GRANJA)
    assert_contract(full)
    assert full.shape == (10335, 10000)
    assert full.obs["cell_type"].nunique() > 5
    tiny = read_dataset(TINY)
    assert_contract(tiny)
    assert tiny.shape == (20, 1000) and "cell_type" in tiny.obs


def test_barcode_list_keeps_listed_cells_in_data_order(real, files, universe, tmp_path):
    chosen = list(real.obs_names[::6])  # 50 cells
    listing = tmp_path / "barcodes.tsv.gz"
    with gzip.open(listing, "wt") as handle:
        handle.write("".join(f"{b}\n" for b in [*chosen[::-1], "NOT-A-CELL-1"]))
    for key in ("h5ad", "mtx_dir", "fragments"):
        adata = read_dataset(files[key], barcodes=listing, universe=universe)
        assert sorted(adata.obs_names) == sorted(chosen)
        assert same_binary(adata[chosen].X, real[chosen])
    from_h5ad = read_dataset(files["h5ad"], barcodes=listing)
    assert from_h5ad.obs_names.tolist() == chosen
    assert from_h5ad.uns["scembed_read"]["n_barcodes_in_list"] == len(chosen) + 1
    frags = read_dataset(files["fragments"], barcodes=listing, universe=universe)
    assert frags.uns["scembed_read"]["n_barcodes_seen"] == N_CELLS + 1
    assert frags.uns["scembed_read"]["n_barcodes_kept"] == len(chosen)


def test_fragments_statistics_chunks_and_min_fragments(real, files, universe):
    whole = read_fragments(files["fragments"], universe)
    chunked = read_fragments(files["fragments"], universe, chunksize=997)
    assert chunked.obs_names.tolist() == whole.obs_names.tolist()
    assert (chunked.X != whole.X).nnz == 0
    info = whole.uns["scembed_read"]
    assert info["n_barcodes_seen"] == N_CELLS + 1  # the ghost barcode is seen, not kept
    assert info["n_barcodes_kept"] == N_CELLS and GHOST_BARCODE not in whole.obs_names
    assert info["unknown_chromosomes"] == [UNKNOWN_CONTIG]
    assert info["n_fragments"] == real.X.nnz + 3
    assert info["n_fragments_overlapping"] == real.X.nnz
    per_cell = pd.Series(np.diff(sp.csr_matrix(real.X).indptr), index=real.obs_names)
    np.testing.assert_array_equal(whole.obs["n_fragments"], per_cell[whole.obs_names])
    threshold = int(per_cell.median())
    strict = read_fragments(files["fragments"], universe, min_fragments=threshold)
    assert sorted(strict.obs_names) == sorted(per_cell.index[per_cell >= threshold])
    assert strict.uns["scembed_read"]["n_barcodes_kept"] == int((per_cell >= threshold).sum())


def test_fragments_with_other_chromosome_naming(real, universe, tmp_path):
    ensembl = GenomicRegions(
        np.char.replace(universe.chrom.astype(str), "chr", ""), universe.start, universe.end
    )
    path = write_fragments(real, tmp_path / "fragments.tsv.gz")
    adata = read_fragments(path, ensembl)
    assert adata.uns["scembed_read"]["renamed_chromosomes"]["chr1"] == "1"
    assert adata.var["chr"].iloc[0] == "1"
    assert same_binary(adata[real.obs_names].X, real)


@pytest.mark.parametrize("fmt", ["h5ad", "10x_h5", "mtx_dir", "csv", "fragments", "zip"])
def test_memory_budget_is_checked(fmt, files, universe):
    with pytest.raises(MemoryBudgetError, match="GB of memory"):
        read_dataset(files[fmt], universe=universe, max_bytes=100_000)


def test_memory_estimate():
    assert estimate_dataset_bytes(10, 20, 30) == 30 * 24 + 30 * 200
    assert estimate_dataset_bytes(10, 20, 30, dense_bytes=800) == 30 * 24 + 30 * 200 + 800
    assert estimate_dataset_bytes(10, 20, 31) > estimate_dataset_bytes(10, 20, 30)
    assert default_memory_budget() > 0
    assert check_memory_budget(10, 20, 30, 10**9) == estimate_dataset_bytes(10, 20, 30)
    with pytest.raises(MemoryBudgetError, match="640,000.0 GB"):
        check_memory_budget(10**12, 10**12, 10**13)


def test_h5ad_layers(real, tmp_path):
    small = real[:50].copy()
    counts = sp.csr_matrix(small.X)
    empty_x = ad.AnnData(
        X=sp.csr_matrix(small.shape, dtype=np.float32), obs=small.obs, var=small.var
    )
    empty_x.layers["counts"] = counts
    empty_x.write_h5ad(tmp_path / "empty_x.h5ad")
    auto = read_dataset(tmp_path / "empty_x.h5ad")
    assert auto.uns["scembed_read"]["matrix"] == "layers/counts"
    assert same_binary(auto.X, small)
    tfidf = ad.AnnData(X=np.random.default_rng(0).random(small.shape), obs=small.obs, var=small.var)
    tfidf.layers["raw"] = counts
    tfidf.write_h5ad(tmp_path / "tfidf.h5ad")
    picked = read_dataset(tmp_path / "tfidf.h5ad", layer="raw")
    assert same_binary(picked.X, small)
    with pytest.raises(InputFormatError, match="no layer 'counts'; its layers are"):
        read_dataset(tmp_path / "tfidf.h5ad", layer="counts")
    raw = read_h5ad_checked(tmp_path / "tfidf.h5ad", layer="raw")
    assert raw.X.max() > 1 and not raw.layers  # stored values, one matrix only
    with pytest.raises(MemoryBudgetError):
        read_h5ad_checked(tmp_path / "tfidf.h5ad", max_bytes=1000)


@pytest.mark.parametrize("style", ["colon_names", "dash_names", "seqnames", "chrom_categorical"])
def test_h5ad_coordinate_conventions(style, real, tmp_path):
    small = real[:40, :500].copy()
    chrom, start, end = (small.var[c].to_numpy() for c in ("chr", "start", "end"))
    if style == "colon_names":
        var = pd.DataFrame(
            index=[f"{c}:{s}-{e}" for c, s, e in zip(chrom, start, end, strict=True)]
        )
    elif style == "dash_names":
        var = pd.DataFrame(
            index=[f"{c}-{s}-{e}" for c, s, e in zip(chrom, start, end, strict=True)]
        )
    elif style == "seqnames":
        var = pd.DataFrame(
            {"seqnames": chrom, "start": start, "end": end}, index=[f"peak{i}" for i in range(500)]
        )
    else:
        var = pd.DataFrame(
            {"chrom": pd.Categorical(chrom), "start": start.astype(float), "end": end},
            index=small.var_names,
        )
    ad.AnnData(X=small.X, obs=small.obs, var=var).write_h5ad(tmp_path / "x.h5ad")
    adata = read_dataset(tmp_path / "x.h5ad")
    assert_contract(adata)
    assert adata.var_names.tolist() == small.var_names.tolist()
    assert same_binary(adata.X, small)
    if style == "seqnames":
        assert adata.var["original_name"].iloc[0] == "peak0"


def test_10x_variants(real, tmp_path):
    """Multiome h5 (genes + peaks), arc-style features.tsv, cells x peaks mtx orientation."""
    small = real[:30, :200].copy()
    counts = sp.csr_matrix(small.X).astype(np.int32)
    ids = [f"{c}:{s}-{e}" for c, s, e in small.var[["chr", "start", "end"]].itertuples(index=False)]
    genes = sp.random(30, 5, density=0.5, format="csr", random_state=0, dtype=np.float64)
    genes.data = np.ceil(genes.data * 5)
    both = sp.hstack([genes.astype(np.int32), counts], format="csr")
    with h5py.File(tmp_path / "multiome.h5", "w") as handle:
        grp = handle.create_group("matrix")
        grp["barcodes"] = np.array(small.obs_names, dtype="S")
        grp["data"], grp["indices"], grp["indptr"] = both.data, both.indices, both.indptr
        grp["shape"] = np.array([both.shape[1], both.shape[0]])
        grp["features/id"] = np.array([f"ENSG{i}" for i in range(5)] + ids, dtype="S")
        grp["features/feature_type"] = np.array([b"Gene Expression"] * 5 + [b"Peaks"] * 200)
    multiome = read_dataset(tmp_path / "multiome.h5")
    assert multiome.var_names.tolist() == small.var_names.tolist()
    assert same_binary(multiome.X, small)

    arc = tmp_path / "arc"
    arc.mkdir()
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, both.T.tocoo())
    (arc / "matrix.mtx").write_bytes(buffer.getvalue())
    (arc / "barcodes.tsv").write_text("".join(f"{b}\n" for b in small.obs_names))
    rows = [f"ENSG{i}\tGENE{i}\tGene Expression\tchr1\t{i * 10}\t{i * 10 + 5}\n" for i in range(5)]
    rows += [
        f"{i}\t{i}\tPeaks\t{c}\t{s}\t{e}\n"
        for i, (c, s, e) in zip(
            ids, small.var[["chr", "start", "end"]].itertuples(index=False), strict=True
        )
    ]
    (arc / "features.tsv").write_text("".join(rows))
    from_arc = read_dataset(arc)
    assert same_binary(from_arc.X, small)

    flipped = tmp_path / "flipped"
    flipped.mkdir()
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, counts.tocoo())  # cells x peaks instead of 10x peaks x cells
    (flipped / "matrix.mtx").write_bytes(buffer.getvalue())
    (flipped / "barcodes.tsv").write_text("".join(f"{b}\n" for b in small.obs_names))
    small.var[["chr", "start", "end"]].to_csv(
        flipped / "peaks.bed", sep="\t", header=False, index=False
    )
    assert same_binary(read_dataset(flipped).X, small)


def test_mixed_index_dtypes_are_read(tmp_path, planted):
    """A CSR h5ad with int64 indptr and int32 indices (written by other tools) reads."""
    path = tmp_path / "mixed.h5ad"
    planted.write_h5ad(path)
    with h5py.File(path, "a") as handle:
        indptr = handle["X/indptr"][()].astype(np.int64)
        del handle["X/indptr"]
        handle["X/indptr"] = indptr
        handle["X/indices"][...] = handle["X/indices"][()].astype(np.int32)
    adata = read_dataset(path)
    assert (adata.X != planted.X).nnz == 0
