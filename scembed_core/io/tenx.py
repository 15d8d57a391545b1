"""10x Genomics peak-barcode matrices: the ``.h5`` file and the Matrix Market folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from ..errors import CoordinateError, CountValueError, InputFormatError, ScEmbedError
from ..regions import GenomicRegions, parse_region_names
from ._budget import check_memory_budget
from ._files import DECOMPRESS_ERRORS, is_gzip, not_utf8, open_text, read_column_file
from ._normalize import Parsed, as_str, empty_regions, regions_from_frame


def _regions_from_feature_names(names: np.ndarray, source: str) -> GenomicRegions:
    try:
        return parse_region_names(names)
    except CoordinateError as exc:
        if "beyond any genome" in str(exc):
            raise
        raise CoordinateError(
            f"{source}: the features are not peaks named like chr1:100-600 "
            f"(e.g. {str(names[0])!r}). Upload a peak-barcode matrix, not a gene matrix."
        ) from exc


def parse_10x_h5(path: Path, max_bytes: int | None) -> Parsed:
    """Return a 10x ``filtered_peak_bc_matrix.h5`` as a :class:`Parsed` dataset (peaks only)."""
    source = path.name
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputFormatError(
            f"{source} is not a readable HDF5 file (truncated or corrupt: {exc})."
        ) from exc
    try:
        with handle:
            groups = [handle[k] for k in handle if isinstance(handle[k], h5py.Group)]
            if "matrix" in handle:
                grp = handle["matrix"]
            elif len(groups) == 1 and "indptr" in groups[0]:
                grp = groups[0]
            else:
                raise InputFormatError(
                    f"{source} is HDF5 but neither AnnData (.h5ad) nor a 10x matrix (.h5 with a "
                    f"'matrix' group); found {list(handle.keys())[:8]}."
                )
            missing = [
                k for k in ("data", "indices", "indptr", "shape", "barcodes") if k not in grp
            ]
            if missing:
                raise InputFormatError(f"{source}: the 10x matrix lacks {missing}.")
            n_features, n_barcodes = (int(v) for v in grp["shape"][()])
            nnz = int(grp["data"].shape[0])
            check_memory_budget(n_barcodes, n_features, nnz, max_bytes, what=source)
            barcodes = as_str(grp["barcodes"][()])
            features = grp.get("features", grp)
            name_keys = [k for k in ("id", "name", "interval") if k in features]
            if not name_keys:
                raise InputFormatError(f"{source}: the 10x matrix has no features/id dataset.")
            ids = as_str(features[name_keys[0]][()])
            kinds = as_str(features["feature_type"][()]) if "feature_type" in features else None
            data, indices, indptr = grp["data"][()], grp["indices"][()], grp["indptr"][()]
    except (ScEmbedError, MemoryError):
        raise
    except Exception as exc:
        raise InputFormatError(f"{source}: could not read the 10x matrix ({exc}).") from exc
    if len(barcodes) != n_barcodes or len(ids) != n_features or len(indptr) != n_barcodes + 1:
        raise InputFormatError(
            f"{source}: the matrix declares {n_features:,} features x {n_barcodes:,} barcodes "
            f"but lists {len(ids):,} features and {len(barcodes):,} barcodes."
        )
    try:
        matrix = sp.csr_matrix((data, indices, indptr), shape=(n_barcodes, n_features))
        matrix.check_format(full_check=True)
    except ValueError as exc:
        raise InputFormatError(f"{source}: the sparse matrix is inconsistent ({exc}).") from exc
    if kinds is not None and (kinds == "Peaks").any() and not (kinds == "Peaks").all():
        peaks = np.flatnonzero(kinds == "Peaks")
        matrix, ids = matrix[:, peaks], ids[peaks]
    regions = _regions_from_feature_names(ids, source) if len(ids) else empty_regions()
    return Parsed(matrix, regions, pd.DataFrame(index=pd.Index(barcodes)), "10x_h5")


def _read_mtx_header(path: Path) -> tuple[int, int, int]:
    """(rows, columns, entries) declared by a Matrix Market header, without reading entries."""
    try:
        with open_text(path) as handle:
            banner = handle.readline(4096).split()
            if len(banner) < 4 or banner[0] != "%%MatrixMarket":
                raise InputFormatError(
                    f"{path.name} is not a Matrix Market file (no %%MatrixMarket banner)."
                )
            if banner[3].lower() == "complex":
                raise CountValueError(f"{path.name} holds complex numbers; expected counts.")
            line = handle.readline(4096)
            while line.startswith("%") or not line.strip():
                if not line:
                    raise InputFormatError(f"{path.name} ends before its size line.")
                line = handle.readline(4096)
    except UnicodeDecodeError as exc:
        raise not_utf8(path.name, exc) from exc
    except DECOMPRESS_ERRORS as exc:
        raise InputFormatError(
            f"{path.name} could not be read (truncated or corrupt gzip: {exc})."
        ) from exc
    try:
        sizes = [int(v) for v in line.split()]
    except ValueError:
        sizes = []
    if banner[2].lower() == "array" and len(sizes) == 2:
        sizes.append(sizes[0] * sizes[1])
    if len(sizes) != 3 or min(sizes) < 0:
        raise InputFormatError(f"{path.name}: malformed size line {line.strip()[:80]!r}.")
    return sizes[0], sizes[1], sizes[2]


def _read_features(path: Path) -> tuple[GenomicRegions, np.ndarray | None]:
    """Peaks from ``peaks.bed`` or ``features.tsv``; also a mask of peak rows, if typed."""
    frame = read_column_file(path, "peaks")
    if len(frame) == 0:
        return empty_regions(), None
    if frame.shape[1] >= 6 and frame[2].isin(["Peaks", "Gene Expression"]).any():
        mask = (frame[2] == "Peaks").to_numpy()
        sub = frame.loc[mask, [3, 4, 5]].set_axis(["chr", "start", "end"], axis=1)
        return regions_from_frame(sub, path.name), mask
    integer = r"^-?\d+$"
    if (
        frame.shape[1] >= 3
        and frame[1].str.match(integer).all()
        and frame[2].str.match(integer).all()
    ):
        sub = frame[[0, 1, 2]].set_axis(["chr", "start", "end"], axis=1)
        return regions_from_frame(sub, path.name), None
    return _regions_from_feature_names(frame[0].to_numpy(), path.name), None


def _find_one(folder: Path, endings: tuple[str, ...], what: str) -> Path:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for ending in endings:
        hits = [p for p in files if p.name.lower().endswith(ending)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InputFormatError(
                f"The folder {folder.name} has several {what} files ({[p.name for p in hits]})."
            )
    raise InputFormatError(
        f"The folder {folder.name} has no {what} file (expected one of {list(endings)}; "
        f"found {[p.name for p in files][:10]}). A 10x folder needs matrix.mtx.gz, "
        "barcodes.tsv.gz and peaks.bed.gz."
    )


def parse_mtx_dir(folder: Path, max_bytes: int | None) -> Parsed:
    """Return a 10x Matrix Market folder as a :class:`Parsed` dataset (peaks x cells transposed)."""
    source = folder.name
    mtx = _find_one(folder, ("matrix.mtx.gz", "matrix.mtx", ".mtx.gz", ".mtx"), "matrix.mtx")
    rows, cols, nnz = _read_mtx_header(mtx)
    check_memory_budget(cols, rows, nnz, max_bytes, what=source)
    bc_file = _find_one(folder, ("barcodes.tsv.gz", "barcodes.tsv", "barcodes.txt"), "barcodes")
    feat_file = _find_one(
        folder,
        ("peaks.bed.gz", "peaks.bed", "features.tsv.gz", "features.tsv", ".bed.gz", ".bed"),
        "peaks",
    )
    barcodes = as_str(read_column_file(bc_file, "barcodes")[0].to_numpy())
    regions, peak_mask = _read_features(feat_file)
    n_feat = len(peak_mask) if peak_mask is not None else len(regions)
    if (rows, cols) == (n_feat, len(barcodes)):
        transpose = True
    elif (rows, cols) == (len(barcodes), n_feat):
        transpose = False
    else:
        raise InputFormatError(
            f"{mtx.name} declares {rows:,} x {cols:,} but {feat_file.name} has {n_feat:,} "
            f"peaks and {bc_file.name} has {len(barcodes):,} barcodes; expected "
            f"{n_feat:,} x {len(barcodes):,} (peaks x cells, the 10x layout). The files do not "
            "belong together."
        )
    try:
        with gzip.open(mtx, "rb") if is_gzip(mtx) else open(mtx, "rb") as handle:
            matrix = scipy.io.mmread(handle)
    except (ScEmbedError, MemoryError):
        raise
    except Exception as exc:
        raise InputFormatError(
            f"{mtx.name} could not be parsed as a Matrix Market file ({exc}). It may be "
            "truncated or corrupt."
        ) from exc
    matrix = sp.csr_matrix(matrix.T if transpose else matrix)
    if peak_mask is not None:
        matrix = matrix[:, np.flatnonzero(peak_mask)]
    return Parsed(matrix, regions, pd.DataFrame(index=pd.Index(barcodes)), "10x_mtx")
