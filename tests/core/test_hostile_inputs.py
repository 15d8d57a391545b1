"""The attack run's remaining WRONG/CRASH cases (2026-12, rows 15, 27-29, 64, 68, P5, P12)."""

from __future__ import annotations

import gzip
import subprocess
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import REPO

from scembed_core.errors import CoordinateError, InputFormatError, ParameterError
from scembed_core.io import read_dataset
from scembed_core.reference import DEMO_QUERY_PATH
from scembed_core.regions import GenomicRegions

HUGE = "chr1_99999999999999999999_99999999999999999999999"


def _small(n_cells: int = 4) -> ad.AnnData:
    x = sp.csr_matrix(np.eye(n_cells, 3, dtype=np.float32))
    var = pd.DataFrame(index=["chr1_100_200", "chr1_300_400", "chr1_500_600"])
    return ad.AnnData(x, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=var)


def test_a_twenty_digit_coordinate_in_a_peak_name_is_a_coordinate_error(tmp_path):
    adata = _small()
    adata.var_names = ["chr1_100_200", "chr1_300_400", HUGE]
    adata.write_h5ad(tmp_path / "huge.h5ad")
    with pytest.raises(CoordinateError, match="beyond any genome"):
        read_dataset(tmp_path / "huge.h5ad")
    (tmp_path / "huge.csv").write_text(f"cell,{HUGE}\nA,1\n")
    with pytest.raises(CoordinateError, match="beyond any genome"):
        read_dataset(tmp_path / "huge.csv")


def test_a_float_start_above_int64_is_not_reported_as_negative(tmp_path):
    adata = _small()
    adata.var = pd.DataFrame(
        {"chr": ["chr1"] * 3, "start": [100.0, 300.0, 1e30], "end": [200.0, 400.0, 2e30]},
        index=adata.var_names,
    )
    adata.write_h5ad(tmp_path / "big.h5ad")
    with pytest.raises(CoordinateError, match="beyond any genome") as info:
        read_dataset(tmp_path / "big.h5ad")
    assert "-9223372036854775808" not in str(info.value)


def _universe() -> GenomicRegions:
    return GenomicRegions(["chr1", "chr1"], [845000, 881000], [846000, 882000])


def test_a_fragment_coordinate_of_1e20_is_a_coordinate_error(tmp_path):
    path = tmp_path / "f.tsv.gz"
    path.write_bytes(gzip.compress(b"chr1\t845400\t100000000000000000000\tA\t1\n"))
    with pytest.raises(CoordinateError, match="beyond any genome"):
        read_dataset(path, universe=_universe())


def test_a_nul_byte_in_fragment_barcodes_never_merges_cells(tmp_path):
    path = tmp_path / "f.tsv.gz"
    lines = b"chr1\t845400\t845600\tB\0X\t1\nchr1\t881300\t881500\tB\0Y\t1\n"
    path.write_bytes(gzip.compress(lines))
    with pytest.raises(InputFormatError, match="NUL byte"):
        read_dataset(path, universe=_universe())
    plain = tmp_path / "ok.tsv.gz"
    plain.write_bytes(gzip.compress(lines.replace(b"\0", b"_")))
    assert sorted(read_dataset(plain, universe=_universe()).obs_names) == ["B_X", "B_Y"]


def test_a_sparse_matrix_with_an_index_out_of_range_is_refused_when_read(tmp_path):
    path = tmp_path / "bad.h5ad"
    _small().write_h5ad(path)
    with h5py.File(path, "r+") as f:
        f["X"]["indices"][0] = 10_000_000
    with pytest.raises(InputFormatError, match="damaged sparse matrix"):
        read_dataset(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_resolution_is_refused(value):
    from scembed_core.cluster import build_knn_graph, cluster_graph

    rng = np.random.default_rng(0)
    graph = build_knn_graph(rng.normal(size=(30, 5)).astype(np.float32), 5)
    with pytest.raises(ParameterError, match="finite"):
        cluster_graph(graph, value)


def test_cli_refuses_nan_resolution_and_a_folder_out_before_any_work(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scembed_core", "project", str(DEMO_QUERY_PATH), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )

    done = run("--out", str(tmp_path / "x.h5ad"), "--resolution", "nan")
    assert (
        done.returncode == 2 and "finite number" in done.stderr and "Traceback" not in done.stderr
    )
    done = run("--out", str(tmp_path))
    assert done.returncode == 2 and "must name a file" in done.stderr


@pytest.mark.parametrize("value", [np.nan, -1.0])
def test_tl_project_refuses_counts_the_reader_refuses(value):
    from scembed_core import tl
    from scembed_core.errors import CountValueError
    from scembed_core.reference import load_default_reference

    adata = read_dataset(DEMO_QUERY_PATH)[:50].copy()
    adata.X = adata.X.toarray()
    adata.X[0, 0] = value
    with pytest.raises(CountValueError):
        tl.project(adata, load_default_reference(), ev=False)


# Row 77: a Latin-1 text file was reported as "truncated or corrupt gzip".
LATIN1_TABLES = {
    "header": b"c\xe9ll,chr1_100_600,chr1_1000_1500\nA,1,0\nB,0,1\n",
    "second line": b"cell,chr1_100_600,chr1_1000_1500\nc\xe9ll,1,0\nB,0,1\n",
    "deep row": b"cell,chr1_100_600,chr1_1000_1500\n"
    + b"".join(b"c%d,1,0\n" % i for i in range(3000))
    + b"c\xe9ll,0,1\n",
}


@pytest.mark.parametrize("where", list(LATIN1_TABLES))
@pytest.mark.parametrize("gzipped", [False, True], ids=["csv", "csv.gz"])
def test_a_latin1_table_is_named_as_not_utf8(tmp_path, where, gzipped):
    from scembed_core.errors import TextEncodingError

    data = LATIN1_TABLES[where]
    path = tmp_path / ("cells.csv.gz" if gzipped else "cells.csv")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    with pytest.raises(TextEncodingError, match="not UTF-8") as info:
        read_dataset(path)
    message = str(info.value)
    assert "0xe9" in message and "c?ll" in message and "Latin-1" in message
    assert "gzip" not in message and "truncated" not in message
    assert isinstance(info.value, InputFormatError)  # callers catching the old type still do


def test_latin1_barcodes_of_a_10x_folder_are_named_as_not_utf8(tmp_path):
    from scipy.io import mmwrite

    from scembed_core.errors import TextEncodingError

    mmwrite(str(tmp_path / "matrix.mtx"), sp.coo_matrix(np.eye(2, 2)))
    (tmp_path / "barcodes.tsv").write_bytes(b"A\nc\xe9ll\n")
    (tmp_path / "peaks.bed").write_text("chr1\t100\t600\nchr1\t1000\t1500\n")
    with pytest.raises(TextEncodingError, match="barcodes.tsv is not UTF-8"):
        read_dataset(tmp_path)
