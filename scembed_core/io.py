"""Readers for scATAC-seq datasets, with validation and errors that say what to do next.

:func:`read_dataset` accepts every format the app offers for upload and returns one
normalised :class:`anndata.AnnData`:

- ``X`` is a binary ``scipy.sparse.csr_matrix`` of ``float32`` (1.0 where a count > 0),
  cells x peaks;
- ``var`` has ``chr`` (str), ``start`` and ``end`` (int64) and ``var_names`` of the form
  ``chr_start_end``; the coordinates are validated (``start < end``, no negatives);
- ``obs`` keeps the file's cell metadata (labels are data: HTML or script text is kept
  verbatim, escaping is the app's job) and gains ``n_peaks`` (non-zeros per cell) when absent;
- ``uns["scembed_read"]`` records the format, the source file name and reader statistics.

Every reader refuses bad input with a typed error from :mod:`scembed_core.errors` before
doing expensive work: pickles are never loaded, archives are checked for path traversal,
links and decompression bombs before anything is extracted, and declared matrix sizes are
checked against a memory budget before any matrix is allocated.
"""

from __future__ import annotations

import csv
import gzip
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata.io import read_elem

from .errors import (
    ChromosomeNamingError,
    CoordinateError,
    CountValueError,
    DuplicateNamesError,
    EmptyDataError,
    InputFormatError,
    MemoryBudgetError,
    ParameterError,
    ScEmbedError,
    UnsafeInputError,
)
from .regions import (
    _NAME_PATTERN,
    GenomicRegions,
    map_peaks_to_universe,
    parse_region_names,
    reconcile_chromosome_names,
)

if TYPE_CHECKING:
    from .liftover import Chain

__all__ = [
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "MAX_COMPRESSION_RATIO",
    "PICKLE_SUFFIXES",
    "SUPPORTED_FORMATS",
    "check_memory_budget",
    "default_memory_budget",
    "detect_format",
    "estimate_dataset_bytes",
    "extract_archive",
    "read_dataset",
    "read_fragments",
    "read_fragment_sample",
    "read_h5ad_checked",
    "regions_from_var",
]

SUPPORTED_FORMATS: tuple[str, ...] = (
    ".h5ad (AnnData, cells x peaks)",
    "10x filtered_peak_bc_matrix.h5",
    "10x matrix folder (matrix.mtx[.gz], barcodes.tsv[.gz], peaks.bed[.gz])",
    ".csv / .csv.gz / .tsv table (cells as rows, region columns named chr1_100_600)",
    "fragments.tsv.gz (chr, start, end, barcode, count; needs a region universe)",
    ".zip / .tar.gz / .tgz archive holding one of the above",
)

#: Largest total size an uploaded archive may expand to.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
#: Largest uncompressed/compressed size ratio accepted for archives above the floor below.
MAX_COMPRESSION_RATIO = 200
_RATIO_FLOOR_BYTES = 64 * 1024**2

#: File suffixes of formats that are (or may carry) Python pickles; refused everywhere.
PICKLE_SUFFIXES = (
    ".pkl",
    ".pickle",
    ".joblib",
    ".npy",
    ".npz",
    ".pt",
    ".pth",
    ".ckpt",
    ".sav",
    ".dill",
    ".cloudpickle",
)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NUMPY_MAGIC = b"\x93NUMPY"
_COORD_COLUMNS = ("chr", "chrom", "chromosome", "seqnames", "start", "end")
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)
_COPY_BLOCK = 1024**2


# --------------------------------------------------------------------------- memory


def default_memory_budget() -> int:
    """Half of the currently available physical memory, in bytes (4 GiB if unknown)."""
    try:
        pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3
    return pages * page_size // 2 if pages > 0 and page_size > 0 else 4 * 1024**3


def estimate_dataset_bytes(n_obs: int, n_vars: int, nnz: int, *, dense_bytes: int = 0) -> int:
    """Generous estimate of the peak memory needed to read and normalise a dataset.

    Parameters
    ----------
    n_obs, n_vars
        Number of cells and peaks.
    nnz
        Number of stored (non-zero) counts.
    dense_bytes
        Size of a dense matrix that must be held in memory while reading, if any.

    Returns
    -------
    int
        Bytes: 24 per non-zero (the file's values and indices plus the binary CSR copy),
        200 per cell and per peak (names, coordinates, metadata) plus ``dense_bytes``.
    """
    return int(nnz) * 24 + (int(n_obs) + int(n_vars)) * 200 + int(dense_bytes)


def check_memory_budget(
    n_obs: int,
    n_vars: int,
    nnz: int,
    max_bytes: int | None = None,
    *,
    what: str = "this dataset",
    dense_bytes: int = 0,
) -> int:
    """Raise :class:`MemoryBudgetError` if a dataset of this size would exceed the budget.

    Returns the estimate in bytes. ``max_bytes=None`` means :func:`default_memory_budget`.
    """
    budget = default_memory_budget() if max_bytes is None else int(max_bytes)
    need = estimate_dataset_bytes(n_obs, n_vars, nnz, dense_bytes=dense_bytes)
    if need > budget:
        raise MemoryBudgetError(
            f"Reading {what} needs about {need / 1e9:,.1f} GB of memory ({int(n_obs):,} cells x "
            f"{int(n_vars):,} peaks, {int(nnz):,} non-zero counts) but the budget is "
            f"{budget / 1e9:,.1f} GB. Subset the data to fewer cells or peaks before uploading, "
            "use a machine with more memory, or raise max_bytes."
        )
    return need


# --------------------------------------------------------------------------- dispatch


def _head(path: Path, n: int = 512) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _is_gzip(path: Path) -> bool:
    return _head(path, 2) == _GZIP_MAGIC


def _first_text_line(path: Path) -> str:
    """First line that is not a ``#`` comment, decompressing gzip; '' if there is none."""
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rt", errors="replace") as handle:
            for _ in range(1000):
                line = handle.readline(1 << 20)
                if not line:
                    return ""
                if not line.startswith("#") and line.strip():
                    return line.rstrip("\r\n")
    except _DECOMPRESS_ERRORS as exc:
        raise InputFormatError(
            f"{path.name} could not be decompressed (truncated or corrupt gzip: {exc}). "
            "Upload the file again or re-create it with gzip."
        ) from exc
    return ""


def _looks_like_fragments(line: str) -> bool:
    fields = line.split("\t")
    return len(fields) >= 4 and fields[1].isdigit() and fields[2].isdigit()


def _text_format(path: Path) -> str:
    line = _first_text_line(path)
    if line.startswith("%%MatrixMarket"):
        raise InputFormatError(
            f"{path.name} is a lone Matrix Market file. Upload the whole 10x folder as a .zip "
            "or .tar.gz (matrix.mtx.gz with barcodes.tsv.gz and peaks.bed.gz)."
        )
    if _looks_like_fragments(line):
        return "fragments"
    sep = "\t" if line.count("\t") > line.count(",") else ","
    fields = pd.Series(line.split(sep), dtype=object).str.strip().str.strip('"')
    if len(fields) > 1 and fields.str.match(_NAME_PATTERN).any():
        return "csv"
    return ""


def _hdf5_kind(path: Path) -> str:
    try:
        with h5py.File(path, "r") as handle:
            if "obs" in handle and "var" in handle:
                return "h5ad"
            return "10x_h5"
    except OSError as exc:
        raise InputFormatError(
            f"{path.name} is not a readable HDF5 file (truncated or corrupt: {exc}). "
            "Upload it again or re-export it."
        ) from exc


def _unsafe_pickle(name: str) -> UnsafeInputError:
    return UnsafeInputError(
        f"{name} looks like a Python pickle (or a NumPy/joblib/torch file that can hold one); "
        "this app never unpickles uploaded files because that can run arbitrary code. "
        f"Save the data as .h5ad or one of: {'; '.join(SUPPORTED_FORMATS)}."
    )


def detect_format(path: str | Path) -> str:
    """Name the format of ``path`` from its name and, where needed, its first bytes.

    Returns
    -------
    str
        One of ``"h5ad"``, ``"10x_h5"``, ``"mtx_dir"``, ``"csv"``, ``"fragments"``,
        ``"zip"`` or ``"tar"``.

    Raises
    ------
    UnsafeInputError
        For pickle-like files (``.pkl``, ``.joblib``, ``.npy``, ...), by name or content.
    InputFormatError
        If the file matches no supported format.
    """
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path} does not exist.")
    if path.is_dir():
        return "mtx_dir"
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):
        raise _unsafe_pickle(path.name)
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{path.name} is empty (0 bytes).")
    head = _head(path)
    if head.startswith(_NUMPY_MAGIC) or (len(head) > 1 and head[0] == 0x80 and head[1] <= 5):
        raise _unsafe_pickle(path.name)
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".zip",)):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    if head.startswith(_HDF5_MAGIC):
        return _hdf5_kind(path)
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt", ".txt.gz")) and "fragments" not in name:
        if name.endswith(".tsv") and _looks_like_fragments(_first_text_line(path)):
            return "fragments"
        return "csv"
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(512)
        except _DECOMPRESS_ERRORS as exc:
            raise InputFormatError(
                f"{path.name} could not be decompressed (truncated or corrupt gzip: {exc})."
            ) from exc
        if inner[257:262] == b"ustar":
            return "tar"
    kind = _text_format(path)
    if kind:
        return kind
    raise InputFormatError(
        f"{path.name} is not in a supported format. Supported formats: "
        f"{'; '.join(SUPPORTED_FORMATS)}."
    )


# --------------------------------------------------------------------------- normalisation


@dataclass
class _Parsed:
    """A dataset as read from a file, before validation and binarisation."""

    matrix: Any  # cells x peaks, sparse or dense
    regions: GenomicRegions
    obs: pd.DataFrame
    fmt: str
    var: pd.DataFrame | None = None
    obsm: dict = field(default_factory=dict)
    uns: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def _as_str(values: Iterable) -> np.ndarray:
    """Decode bytes and stringify anything else, as an object array of ``str``."""
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8", errors="replace").astype(object)
    if arr.dtype.kind == "O":
        return np.array(
            [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr],
            dtype=object,
        )
    return arr.astype(str).astype(object)


def _check_unique(names: pd.Index, what: str, source: str, hint: str) -> None:
    dup = names[names.duplicated()]
    if len(dup):
        examples = ", ".join(repr(x) for x in dup.unique()[:3])
        raise DuplicateNamesError(
            f"{source}: {dup.nunique():,} {what} occur more than once (e.g. {examples}). {hint}"
        )


def _cell_and_col(x: sp.csr_matrix, pos: int) -> tuple[int, int]:
    row = int(np.searchsorted(x.indptr, pos, side="right") - 1)
    return row, int(x.indices[pos])


def _binarise_counts(
    matrix: Any, source: str, obs_names: pd.Index, peak_names: np.ndarray
) -> sp.csr_matrix:
    """Check counts are finite and non-negative, then return the binary float32 CSR matrix."""
    if not sp.issparse(matrix):
        matrix = np.asarray(matrix)
    if matrix.dtype.kind not in "biuf":
        raise CountValueError(
            f"{source}: counts have type {matrix.dtype}; expected numbers (integers or floats)."
        )
    x = sp.csr_matrix(matrix)
    if x.indices.dtype != x.indptr.dtype:  # e.g. int64 indptr with int32 indices
        index_dtype = np.promote_types(x.indices.dtype, x.indptr.dtype)
        x = sp.csr_matrix(
            (x.data, x.indices.astype(index_dtype), x.indptr.astype(index_dtype)), shape=x.shape
        )
    x.sum_duplicates()
    if x.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(x.data))
        if bad.size:
            row, col = _cell_and_col(x, bad[0])
            raise CountValueError(
                f"{source}: {bad.size:,} counts are not finite (NaN or infinite), e.g. cell "
                f"{obs_names[row]!r}, peak {peak_names[col]!r}. Expected non-negative counts; "
                "replace missing values by 0."
            )
    if x.dtype.kind in "if":
        neg = np.flatnonzero(x.data < 0)
        if neg.size:
            row, col = _cell_and_col(x, neg[0])
            raise CountValueError(
                f"{source}: {neg.size:,} counts are negative (e.g. {x.data[neg[0]]} in cell "
                f"{obs_names[row]!r}, peak {peak_names[col]!r}). Expected raw, non-negative "
                "counts, not normalised or scaled values."
            )
    x.data = (x.data > 0).astype(np.float32)
    x.eliminate_zeros()
    return sp.csr_matrix(x, dtype=np.float32)


def _finalize(parsed: _Parsed, *, source: str, keep: pd.Index | None = None) -> ad.AnnData:
    """Validate a parsed dataset and build the normalised AnnData (see the module docstring)."""
    matrix = parsed.matrix
    n_obs, n_vars = matrix.shape
    if n_obs == 0:
        raise EmptyDataError(
            f"{source} has no cells (0 rows). Expected a cells x peaks matrix with at least one cell."
        )
    if n_vars == 0:
        raise EmptyDataError(
            f"{source} has no peaks (0 regions). Expected a cells x peaks matrix with at least one peak."
        )
    obs = parsed.obs.copy()
    if len(obs) != n_obs or len(parsed.regions) != n_vars:
        raise InputFormatError(
            f"{source}: the matrix is {n_obs:,} x {n_vars:,} but there are {len(obs):,} cell "
            f"names and {len(parsed.regions):,} peaks. The files do not belong together."
        )
    obs.index = pd.Index(_as_str(obs.index), dtype=object)
    _check_unique(
        obs.index,
        "cell barcodes",
        source,
        "Barcodes must be unique; if the data merges samples, prefix each barcode with its sample.",
    )
    regions = parsed.regions.validate(f"peaks of {source}")
    names = regions.names
    _check_unique(
        pd.Index(names),
        "peaks",
        source,
        "Each region may appear once; merge duplicated peaks (e.g. bedtools merge) first.",
    )
    obsm = dict(parsed.obsm)
    if keep is not None:
        mask = obs.index.isin(keep)
        if not mask.any():
            raise EmptyDataError(
                f"None of the {len(keep):,} barcodes in the barcode list occur in {source} "
                f"(the list has e.g. {keep[0]!r}, the data {obs.index[0]!r}). Check barcode "
                "suffixes such as -1 and sample prefixes."
            )
        matrix = matrix[np.flatnonzero(mask)]
        obs = obs.loc[mask]
        obsm = {
            k: (v.loc[mask] if isinstance(v, pd.DataFrame) else v[mask]) for k, v in obsm.items()
        }
    x = _binarise_counts(matrix, source, obs.index, names)
    if x.nnz == 0:
        raise EmptyDataError(
            f"{source}: the matrix is all zero ({x.shape[0]:,} cells x {x.shape[1]:,} peaks), "
            "so no cell has any accessible peak. Check that you uploaded counts, not an empty layer."
        )
    var = regions.to_frame()
    var["chr"] = var["chr"].astype(str).astype(object)
    var.index = pd.Index(names, dtype=object)
    if parsed.var is not None:
        extra = parsed.var.drop(columns=[c for c in _COORD_COLUMNS if c in parsed.var])
        original = _as_str(parsed.var.index)
        for column in extra.columns:
            if str(column) not in var:
                var[str(column)] = extra[column].to_numpy()
        if "original_name" not in var and not np.array_equal(original, names):
            var["original_name"] = original
    if "n_peaks" not in obs:
        obs["n_peaks"] = np.diff(x.indptr).astype(np.int64)
    for key, value in list(obsm.items()):
        if isinstance(value, pd.DataFrame):
            obsm[key] = value.set_axis(obs.index)
    uns = dict(parsed.uns)
    uns["scembed_read"] = {
        "format": parsed.fmt,
        "source": source,
        "n_obs": int(x.shape[0]),
        "n_vars": int(x.shape[1]),
        "nnz": int(x.nnz),
        **parsed.info,
    }
    if keep is not None:
        uns["scembed_read"]["n_barcodes_in_list"] = len(keep)
        uns["scembed_read"]["n_cells_before_barcode_list"] = int(n_obs)
    return ad.AnnData(X=x, obs=obs, var=var, obsm=obsm, uns=uns)


# --------------------------------------------------------------------------- h5ad


def _regions_from_frame(frame: pd.DataFrame, what: str) -> GenomicRegions:
    for column in ("start", "end"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().all() and not np.array_equal(values, np.round(values)):
            raise CoordinateError(f"{what}: some {column} coordinates are not whole numbers.")
    return GenomicRegions.from_frame(frame)


def regions_from_var(var: pd.DataFrame, source: str) -> GenomicRegions:
    """Peak coordinates from ``var`` columns, else from ``var_names``."""
    if len(var) == 0:
        return GenomicRegions(np.empty(0, str), np.empty(0, np.int64), np.empty(0, np.int64))
    has_chrom = any(c in var for c in ("chr", "chrom", "chromosome", "seqnames"))
    if has_chrom and "start" in var and "end" in var:
        return _regions_from_frame(var, source)
    try:
        return parse_region_names(var.index)
    except CoordinateError as exc:
        raise CoordinateError(
            f"{source} has no peak coordinates: var has no chr/start/end columns (found "
            f"{list(var.columns)[:8]}) and the var_names are not region names "
            f"(e.g. {str(var.index[0])!r}). Add var columns chr, start and end, or name the "
            "peaks like chr1_100_600."
        ) from exc


def _element_extent(elem: h5py.Group | h5py.Dataset) -> tuple[int, int, int, int]:
    """(n_obs, n_vars, nnz, dense_bytes) of a stored matrix, from metadata only."""
    if isinstance(elem, h5py.Dataset):
        if elem.ndim != 2:
            raise InputFormatError(f"The matrix {elem.name} has {elem.ndim} dimensions, not 2.")
        n_obs, n_vars = (int(v) for v in elem.shape)
        return n_obs, n_vars, n_obs * n_vars, n_obs * n_vars * elem.dtype.itemsize
    shape = elem.attrs.get("shape", elem.attrs.get("h5sparse_shape"))
    if shape is None or "data" not in elem:
        raise InputFormatError(f"The matrix {elem.name} is neither dense nor CSR/CSC sparse.")
    n_obs, n_vars = (int(v) for v in shape)
    return n_obs, n_vars, int(elem["data"].shape[0]), 0


def _choose_matrix(handle: h5py.File, layer: str | None, source: str) -> str:
    layers = list(handle["layers"].keys()) if "layers" in handle else []
    if layer is not None:
        if layer not in layers:
            raise InputFormatError(
                f"{source} has no layer {layer!r}; its layers are {layers or 'none'}. "
                "Leave the layer empty to use X."
            )
        return f"layers/{layer}"
    if "X" in handle:
        x_empty = _element_extent(handle["X"])[2] == 0
        if x_empty and "counts" in layers:
            return "layers/counts"
        return "X"
    if "counts" in layers:
        return "layers/counts"
    raise InputFormatError(
        f"{source} has no X matrix and no 'counts' layer (layers: {layers or 'none'}). "
        "Pick the layer that holds the counts."
    )


def _read_h5ad_parts(
    path: Path, max_bytes: int | None, layer: str | None
) -> tuple[ad.AnnData, str]:
    source = path.name
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputFormatError(
            f"{source} is not a readable .h5ad file (truncated or corrupt HDF5: {exc}). "
            "Re-export it with adata.write_h5ad(...) and upload it again."
        ) from exc
    try:
        with handle:
            if "obs" not in handle or "var" not in handle:
                raise InputFormatError(
                    f"{source} is an HDF5 file but not AnnData (no obs/var groups; found "
                    f"{list(handle.keys())[:8]})."
                )
            key = _choose_matrix(handle, layer, source)
            n_obs, n_vars, nnz, dense = _element_extent(handle[key])
            check_memory_budget(n_obs, n_vars, nnz, max_bytes, what=source, dense_bytes=dense)
            legacy = "encoding-type" not in handle.attrs  # written by anndata < 0.7
            if not legacy:
                obs, var = read_elem(handle["obs"]), read_elem(handle["var"])
                x = read_elem(handle[key])
                obsm = read_elem(handle["obsm"]) if "obsm" in handle else {}
                try:
                    uns = read_elem(handle["uns"]) if "uns" in handle else {}
                except Exception:  # unreadable uns is metadata we can drop
                    uns = {}
        if legacy:
            old = ad.read_h5ad(path)
            obs, var, obsm, uns = old.obs, old.var, dict(old.obsm), dict(old.uns)
            x = old.X if key == "X" else old.layers[key.split("/", 1)[1]]
    except (ScEmbedError, MemoryError):
        raise
    except Exception as exc:
        raise InputFormatError(
            f"{source} could not be read as AnnData ({type(exc).__name__}: {exc}). The file may "
            "be truncated or corrupt; re-export it with adata.write_h5ad(...)."
        ) from exc
    if x.shape != (len(obs), len(var)):
        raise InputFormatError(
            f"{source}: {key} is {x.shape[0]} x {x.shape[1]} but obs has {len(obs)} rows and "
            f"var {len(var)} rows."
        )
    obs.index = pd.Index(_as_str(obs.index), dtype=object)
    var.index = pd.Index(_as_str(var.index), dtype=object)
    out = ad.AnnData(X=x, obs=obs, var=var)
    for name, value in obsm.items():
        if len(value) == len(obs):
            out.obsm[name] = value
    out.uns = dict(uns)
    return out, key


def read_h5ad_checked(
    path: str | Path, max_bytes: int | None = None, *, layer: str | None = None
) -> ad.AnnData:
    """Read an ``.h5ad`` file, turning every failure into a typed engine error.

    Only what the app needs is loaded: ``obs``, ``var``, ``obsm``, ``uns`` and one matrix as
    ``X`` (the given ``layer``; else ``X``; else, when ``X`` is absent or empty, the
    ``counts`` layer). The matrix's declared size is checked against ``max_bytes`` first.
    Values are returned as stored (not binarised); see :func:`read_dataset` for that.

    Raises
    ------
    InputFormatError
        If the file is truncated, corrupt, not AnnData, or lacks the requested layer.
    MemoryBudgetError
        If the matrix would need more than ``max_bytes`` (default: half the free memory).
    """
    return _read_h5ad_parts(Path(path), max_bytes, layer)[0]


def _parse_h5ad(path: Path, layer: str | None, max_bytes: int | None) -> _Parsed:
    adata, key = _read_h5ad_parts(path, max_bytes, layer)
    return _Parsed(
        matrix=adata.X,
        regions=regions_from_var(adata.var, path.name),
        obs=adata.obs,
        fmt="h5ad",
        var=adata.var,
        obsm=dict(adata.obsm),
        uns=dict(adata.uns),
        info={"matrix": key},
    )


# --------------------------------------------------------------------------- 10x


def _regions_from_feature_names(names: np.ndarray, source: str) -> GenomicRegions:
    try:
        return parse_region_names(names)
    except CoordinateError as exc:
        raise CoordinateError(
            f"{source}: the features are not peaks named like chr1:100-600 "
            f"(e.g. {str(names[0])!r}). Upload a peak-barcode matrix, not a gene matrix."
        ) from exc


def _parse_10x_h5(path: Path, max_bytes: int | None) -> _Parsed:
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
            barcodes = _as_str(grp["barcodes"][()])
            features = grp.get("features", grp)
            name_keys = [k for k in ("id", "name", "interval") if k in features]
            if not name_keys:
                raise InputFormatError(f"{source}: the 10x matrix has no features/id dataset.")
            ids = _as_str(features[name_keys[0]][()])
            kinds = _as_str(features["feature_type"][()]) if "feature_type" in features else None
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
    regions = _regions_from_feature_names(ids, source) if len(ids) else _empty_regions()
    return _Parsed(matrix, regions, pd.DataFrame(index=pd.Index(barcodes)), "10x_h5")


def _empty_regions() -> GenomicRegions:
    return GenomicRegions(np.empty(0, str), np.empty(0, np.int64), np.empty(0, np.int64))


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt") if _is_gzip(path) else open(path)


def _read_mtx_header(path: Path) -> tuple[int, int, int]:
    """(rows, columns, entries) declared by a Matrix Market header, without reading entries."""
    try:
        with _open_text(path) as handle:
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
    except _DECOMPRESS_ERRORS as exc:
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


def _read_column_file(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path,
            sep="\t",
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            comment=None,
            compression="gzip" if _is_gzip(path) else None,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({0: pd.Series([], dtype=str)})
    except (pd.errors.ParserError, *_DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(f"Could not read the {what} file {path.name} ({exc}).") from exc


def _read_features(path: Path) -> tuple[GenomicRegions, np.ndarray | None]:
    """Peaks from ``peaks.bed`` or ``features.tsv``; also a mask of peak rows, if typed."""
    frame = _read_column_file(path, "peaks")
    if len(frame) == 0:
        return _empty_regions(), None
    if frame.shape[1] >= 6 and frame[2].isin(["Peaks", "Gene Expression"]).any():
        mask = (frame[2] == "Peaks").to_numpy()
        sub = frame.loc[mask, [3, 4, 5]].set_axis(["chr", "start", "end"], axis=1)
        return _regions_from_frame(sub, path.name), mask
    integer = r"^-?\d+$"
    if (
        frame.shape[1] >= 3
        and frame[1].str.match(integer).all()
        and frame[2].str.match(integer).all()
    ):
        sub = frame[[0, 1, 2]].set_axis(["chr", "start", "end"], axis=1)
        return _regions_from_frame(sub, path.name), None
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


def _parse_mtx_dir(folder: Path, max_bytes: int | None) -> _Parsed:
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
    barcodes = _as_str(_read_column_file(bc_file, "barcodes")[0].to_numpy())
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
        with gzip.open(mtx, "rb") if _is_gzip(mtx) else open(mtx, "rb") as handle:
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
    return _Parsed(matrix, regions, pd.DataFrame(index=pd.Index(barcodes)), "10x_mtx")


# --------------------------------------------------------------------------- tables


def _parse_table(path: Path, max_bytes: int | None) -> _Parsed:
    """A cells x regions table: first column cell names, region columns ``chr_start_end``.

    Columns whose header is not a region name are kept as cell metadata in ``obs``.
    """
    source = path.name
    compression = "gzip" if _is_gzip(path) else None
    try:
        with _open_text(path) as handle:
            line = handle.readline().rstrip("\r\n")
            second = handle.readline(1 << 16)
    except _DECOMPRESS_ERRORS as exc:
        raise InputFormatError(
            f"{source} could not be read (truncated or corrupt gzip: {exc})."
        ) from exc
    if not line.strip():
        raise EmptyDataError(f"{source} is empty: no header and no cells.")
    sep = "\t" if line.count("\t") > line.count(",") else ","
    header = next(csv.reader([line], delimiter=sep))
    columns = pd.Series(header[1:], dtype=object).astype(str).str.strip()
    if len(columns) == 0:
        raise EmptyDataError(
            f"{source} has no peaks: only a cell-name column. Expected region columns named "
            "like chr1_100_600."
        )
    is_region = columns.str.match(_NAME_PATTERN).to_numpy()
    if not is_region.any():
        first_field = next(csv.reader([second], delimiter=sep), [""])[0] if second else ""
        transposed = bool(_NAME_PATTERN.match(first_field.strip()))
        raise CoordinateError(
            f"No column header of {source} is a region name like chr1_100_600 (found "
            f"{list(columns[:5])}). Expected cells as rows, the first column the cell names and "
            "one column per region."
            + (" The table looks transposed (regions as rows): transpose it." if transposed else "")
        )
    region_names = columns[is_region]
    _check_unique(pd.Index(region_names), "peaks", source, "Each region column may appear once.")
    regions = parse_region_names(region_names.to_numpy())
    region_pos = np.flatnonzero(is_region) + 1
    meta_pos = np.flatnonzero(~is_region) + 1
    width = len(columns) + 1
    chunk_rows = int(max(1, min(50_000, 64 * 1024**2 // (8 * width))))
    blocks: list[sp.csr_matrix] = []
    metas: list[pd.DataFrame] = []
    cells: list[np.ndarray] = []
    n_rows, nnz = 0, 0
    try:
        reader = pd.read_csv(
            path, sep=sep, header=0, names=list(range(width)), index_col=0,
            chunksize=chunk_rows, compression=compression, keep_default_na=True,
        )  # fmt: skip
        for chunk in reader:
            counts = chunk[region_pos]
            texty = [c for c, dtype in counts.dtypes.items() if dtype.kind not in "biuf"]
            if texty:
                converted = counts[texty].apply(pd.to_numeric, errors="coerce")
                bad = converted.isna() & counts[texty].notna()
                if bad.to_numpy().any():
                    row, col = np.argwhere(bad.to_numpy())[0]
                    raise CountValueError(
                        f"{source}: {int(bad.to_numpy().sum()):,} counts are not numbers, e.g. "
                        f"{counts[texty].iloc[row, col]!r} in cell {str(chunk.index[row])!r}, "
                        f"column {columns.iloc[texty[col] - 1]!r}. Region columns must hold "
                        "counts; keep labels in columns not named like regions."
                    )
                counts = counts.copy()
                counts[texty] = converted
            values = counts.to_numpy(dtype=np.float64)
            block = sp.csr_matrix(values)
            blocks.append(block)
            metas.append(chunk[meta_pos].set_axis(list(columns[~is_region]), axis=1))
            cells.append(_as_str(chunk.index))
            n_rows, nnz = n_rows + len(chunk), nnz + block.nnz
            check_memory_budget(n_rows, len(region_pos), nnz, max_bytes, what=source)
    except (ScEmbedError, MemoryError):
        raise
    except (pd.errors.ParserError, ValueError, *_DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{source} could not be read as a cells x regions table ({exc}). It may be "
            "truncated, or rows may have a different number of fields than the header."
        ) from exc
    if blocks:
        matrix = sp.vstack(blocks, format="csr")
        obs = pd.concat(metas)
        obs.index = pd.Index(np.concatenate(cells), dtype=object)
    else:
        matrix = sp.csr_matrix((0, len(region_pos)), dtype=np.float32)
        obs = pd.DataFrame(index=pd.Index([], dtype=object))
    return _Parsed(matrix, regions, obs, "csv")


# --------------------------------------------------------------------------- fragments


def _read_barcode_list(path: str | Path) -> pd.Index:
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"The barcode list {path} does not exist.")
    frame = _read_column_file(path, "barcode list")
    values = pd.Index(_as_str(frame[0].str.strip().to_numpy())).unique()
    values = values[values != ""]
    if len(values) == 0:
        raise EmptyDataError(f"The barcode list {path.name} is empty.")
    return values


def _lift_fragments(
    frags: GenomicRegions,
    local: np.ndarray,
    codes: np.ndarray,
    chain: Chain,
    tally: dict[str, int],
) -> tuple[GenomicRegions, np.ndarray, np.ndarray]:
    """Lift one chunk of fragments (vectorised) and count the lifted and dropped ones."""
    from .errors import ChromosomeNamingError
    from .liftover import lift_regions

    try:
        result = lift_regions(frags, chain)
    except ChromosomeNamingError:
        tally["unknown_contig"] = tally.get("unknown_contig", 0) + len(frags)
        return GenomicRegions(frags.chrom[:0], frags.start[:0], frags.end[:0]), local[:0], codes[:0]
    tally["n_lifted"] = tally.get("n_lifted", 0) + result.n_lifted
    for reason, n in result.dropped.items():
        tally[reason] = tally.get(reason, 0) + n
    return result.regions, local[result.kept], codes[result.kept]


def read_fragment_sample(path: str | Path, n: int = 200_000) -> GenomicRegions:
    """The first ``n`` fragments of a fragments file, as regions (for build detection)."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path, sep="\t", header=None, comment="#", usecols=[0, 1, 2], nrows=n,
            names=["chr", "start", "end"], dtype={"chr": str},
            compression="gzip" if _is_gzip(path) else None,
        )  # fmt: skip
    except (pd.errors.ParserError, ValueError, *_DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{path.name} could not be read as a fragments file ({exc}). Expected 5 "
            "tab-separated columns chr, start, end, barcode, count."
        ) from exc
    return GenomicRegions.from_frame(frame)


def _parse_fragments(
    path: Path,
    universe: GenomicRegions,
    keep: pd.Index | None,
    min_fragments: int,
    max_bytes: int | None,
    chunksize: int,
    liftover: Chain | None = None,
) -> _Parsed:
    source = path.name
    universe.validate("universe regions")
    _check_unique(
        pd.Index(universe.names), "universe regions", "The universe", "Deduplicate the universe."
    )
    n_universe = len(universe)
    keep_set = set(keep) if keep is not None else None
    ids: dict[str, int] = {}
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    n_total = np.zeros(0, np.int64)
    n_overlap = np.zeros(0, np.int64)
    stats = {"n_fragments": 0, "n_fragments_overlapping": 0, "n_fragments_known_chrom": 0}
    renamed: dict[str, str] = {}
    unknown: set[str] = set()
    stored = 0
    lifted: dict[str, int] = {}
    try:
        reader = pd.read_csv(
            path, sep="\t", header=None, comment="#", usecols=[0, 1, 2, 3],
            names=["chr", "start", "end", "barcode"], dtype={"chr": str, "barcode": str},
            chunksize=chunksize, compression="gzip" if _is_gzip(path) else None,
            keep_default_na=False, na_filter=False,
        )  # fmt: skip
        for chunk in reader:
            start = pd.to_numeric(chunk["start"], errors="coerce")
            end = pd.to_numeric(chunk["end"], errors="coerce")
            if start.isna().any() or end.isna().any():
                raise CoordinateError(
                    f"{source}: fragment start/end values are not integers (e.g. line with "
                    f"{chunk.iloc[int(np.flatnonzero(start.isna() | end.isna())[0])].tolist()})."
                )
            frags = GenomicRegions(chunk["chr"].to_numpy(), start.to_numpy(), end.to_numpy())
            frags.validate("fragments")
            local, uniques = pd.factorize(chunk["barcode"].to_numpy(dtype=object))
            gids = np.array([ids.setdefault(b, len(ids)) for b in uniques], dtype=np.int64)
            codes = gids[local]
            if len(ids) > len(n_total):
                n_total = np.pad(n_total, (0, len(ids) - len(n_total)))
                n_overlap = np.pad(n_overlap, (0, len(ids) - len(n_overlap)))
            n_total += np.bincount(codes, minlength=len(ids))
            stats["n_fragments"] += len(chunk)
            if liftover is not None:
                frags, local, codes = _lift_fragments(frags, local, codes, liftover, lifted)
            chunk_renamed, chunk_unknown = reconcile_chromosome_names(
                np.unique(frags.chrom), universe.chrom
            )
            renamed.update(chunk_renamed)
            unknown.update(chunk_unknown)
            mask = ~np.isin(frags.chrom, chunk_unknown)
            stats["n_fragments_known_chrom"] += int(mask.sum())
            if keep_set is not None:
                allowed = np.array([b in keep_set for b in uniques], dtype=bool)
                mask &= allowed[local]
            if not mask.any():
                continue
            sel = np.flatnonzero(mask)
            sub = GenomicRegions(frags.chrom[sel], frags.start[sel], frags.end[sel])
            hits = map_peaks_to_universe(sub, universe).matrix
            by_barcode = sp.csr_matrix(
                (np.ones(len(sel), np.float32), (codes[sel], np.arange(len(sel)))),
                shape=(len(ids), len(sel)),
            )
            counts = (by_barcode @ hits).tocoo()
            hit = np.diff(hits.indptr) > 0
            n_overlap += np.bincount(codes[sel][hit], minlength=len(ids))
            stats["n_fragments_overlapping"] += int(hit.sum())
            rows.append(counts.row.astype(np.int64))
            cols.append(counts.col.astype(np.int64))
            stored += counts.nnz
            check_memory_budget(len(ids), n_universe, stored, max_bytes, what=source)
    except (ScEmbedError, MemoryError):
        raise
    except (pd.errors.ParserError, ValueError, *_DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{source} could not be read as a fragments file ({exc}). Expected 5 tab-separated "
            "columns chr, start, end, barcode, count; the file may be truncated."
        ) from exc
    if stats["n_fragments"] == 0:
        raise EmptyDataError(f"{source} holds no fragments.")
    if stats["n_fragments_known_chrom"] == 0:
        raise ChromosomeNamingError(
            f"None of the fragments' chromosomes ({', '.join(sorted(unknown)[:5])}) exist in "
            f"the universe ({', '.join(sorted(set(universe.chrom))[:5])}, ...). Check the "
            "genome build and the species of the reference."
        )
    row = np.concatenate(rows) if rows else np.empty(0, np.int64)
    col = np.concatenate(cols) if cols else np.empty(0, np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(row), np.float32), (row, col)), shape=(len(ids), n_universe)
    )
    barcodes = np.array(list(ids), dtype=object)
    kept = n_overlap >= max(int(min_fragments), 0)
    if keep_set is not None:
        kept &= np.array([b in keep_set for b in barcodes], dtype=bool)
    kept_idx = np.flatnonzero(kept)
    obs = pd.DataFrame(
        {"n_fragments": n_overlap[kept_idx], "n_fragments_total": n_total[kept_idx]},
        index=pd.Index(barcodes[kept_idx], dtype=object),
    )
    info = {
        "n_barcodes_seen": len(ids),
        "n_barcodes_kept": int(kept_idx.size),
        "min_fragments": int(min_fragments),
        "renamed_chromosomes": {str(k): str(v) for k, v in renamed.items()},
        "unknown_chromosomes": sorted(str(c) for c in unknown),
        **stats,
    }
    if liftover is not None:
        info["liftover"] = {
            "chain": liftover.name,
            "source_build": liftover.source,
            "target_build": liftover.target,
            "what": "fragments",
            "n_peaks": int(stats["n_fragments"]),
            "n_lifted": int(lifted.pop("n_lifted", 0)),
            "n_dropped": int(sum(lifted.values())),
            "dropped": dict(lifted),
        }
    if kept_idx.size == 0:
        raise EmptyDataError(
            f"{source}: none of the {len(ids):,} barcodes has >= {min_fragments} fragments "
            "overlapping the universe. Lower min_fragments or check the barcode list and the "
            "genome build."
        )
    return _Parsed(matrix[kept_idx], universe, obs, "fragments", info=info)


def read_fragments(
    path: str | Path,
    universe: GenomicRegions,
    *,
    barcodes: str | Path | None = None,
    min_fragments: int = 1,
    max_bytes: int | None = None,
    chunksize: int = 1_000_000,
    liftover: Chain | None = None,
) -> ad.AnnData:
    """Count fragments per barcode over a region universe, streaming the file in chunks.

    Parameters
    ----------
    path
        Fragments file (optionally gzipped): tab-separated chr, start, end, barcode, count;
        ``#`` lines are skipped.
    universe
        The regions to count over; they become the ``var`` of the result, in order.
    barcodes
        Optional file with one barcode per line; other barcodes are dropped.
    min_fragments
        Keep barcodes with at least this many fragments overlapping the universe.
    max_bytes
        Memory budget (default: half the free memory).
    chunksize
        Fragments per chunk.
    liftover
        A chain to lift the fragments through onto the universe's build before counting.

    Returns
    -------
    anndata.AnnData
        Binary barcodes x universe matrix; ``obs["n_fragments"]`` counts overlapping
        fragments, ``obs["n_fragments_total"]`` all fragments of the barcode, and
        ``uns["scembed_read"]`` how many barcodes were seen and kept.
    """
    path = Path(path)
    keep = _read_barcode_list(barcodes) if barcodes is not None else None
    parsed = _parse_fragments(path, universe, keep, min_fragments, max_bytes, chunksize, liftover)
    return _finalize(parsed, source=path.name)


# --------------------------------------------------------------------------- archives


def _safe_member_path(name: str, archive: str) -> PurePosixPath:
    clean = name.replace("\\", "/")
    member = PurePosixPath(clean)
    drive = len(clean) > 1 and clean[1] == ":"
    if member.is_absolute() or drive or ".." in member.parts:
        raise UnsafeInputError(
            f"{archive} contains the entry {name!r}, which points outside the archive folder "
            "(path traversal). Re-create the archive with relative paths only."
        )
    return member


def _check_bomb(total: int, compressed: int, archive: str, limit: int, max_ratio: float) -> None:
    if total > limit:
        raise UnsafeInputError(
            f"{archive} would expand to {total / 1e9:,.2f} GB uncompressed, more than the "
            f"{limit / 1e9:,.2f} GB allowed (possible decompression bomb). Upload the dataset "
            "itself or a smaller archive."
        )
    if total > _RATIO_FLOOR_BYTES and total > max_ratio * max(compressed, 1):
        raise UnsafeInputError(
            f"{archive} expands {total / max(compressed, 1):,.0f}-fold ({total / 1e6:,.0f} MB "
            f"from {compressed / 1e6:,.2f} MB), more than the {max_ratio:,.0f}-fold allowed: "
            "this looks like a decompression bomb and was not extracted."
        )


class _Budget:
    """Counts bytes actually written while extracting, whatever the headers declare."""

    def __init__(self, limit: int, archive: str) -> None:
        self.left, self.archive, self.limit = limit, archive, limit

    def copy(self, src: IO[bytes], dst: IO[bytes]) -> None:
        while block := src.read(_COPY_BLOCK):
            self.left -= len(block)
            if self.left < 0:
                raise UnsafeInputError(
                    f"{self.archive} expands to more than {self.limit / 1e9:,.2f} GB "
                    "(decompression bomb, or sizes in its headers are wrong)."
                )
            dst.write(block)


def _extract_zip(path: Path, dest: Path, limit: int, max_ratio: float) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputFormatError(
            f"{path.name} is not a valid zip archive (truncated or corrupt: {exc})."
        ) from exc
    with archive:
        infos = archive.infolist()
        for info in infos:
            _safe_member_path(info.filename, path.name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeInputError(
                    f"{path.name} contains the symbolic link {info.filename!r}; links are "
                    "refused because they can point outside the archive."
                )
        _check_bomb(
            sum(i.file_size for i in infos), path.stat().st_size, path.name, limit, max_ratio
        )
        budget = _Budget(limit, path.name)
        try:
            for info in infos:
                target = dest / _safe_member_path(info.filename, path.name)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    budget.copy(src, dst)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, *_DECOMPRESS_ERRORS) as exc:
            raise InputFormatError(
                f"{path.name} could not be extracted (truncated or corrupt zip: {exc})."
            ) from exc


def _extract_tar(path: Path, dest: Path, limit: int, max_ratio: float) -> None:
    errors = (tarfile.TarError, *_DECOMPRESS_ERRORS)
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
    except errors as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFormatError(
            f"{path.name} is not a valid tar archive (truncated or corrupt: {reason})."
        ) from exc
    compressed = path.stat().st_size
    with archive:
        members: list[tarfile.TarInfo] = []
        total = 0
        try:
            while (member := archive.next()) is not None:
                _safe_member_path(member.name, path.name)
                if member.issym() or member.islnk():
                    raise UnsafeInputError(
                        f"{path.name} contains the link {member.name!r} -> {member.linkname!r}; "
                        "links are refused because they can point outside the archive."
                    )
                if not (member.isfile() or member.isdir()):
                    raise UnsafeInputError(
                        f"{path.name} contains the special file {member.name!r} (device or "
                        "pipe); only plain files and folders are accepted."
                    )
                total += member.size
                _check_bomb(total, compressed, path.name, limit, max_ratio)
                members.append(member)
            budget = _Budget(limit, path.name)
            for member in members:
                target = dest / _safe_member_path(member.name, path.name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = archive.extractfile(member)
                if src is None:
                    continue
                with src, open(target, "wb") as dst:
                    budget.copy(src, dst)
        except errors as exc:
            raise InputFormatError(
                f"{path.name} could not be extracted (truncated or corrupt tar: {exc})."
            ) from exc


def _find_dataset(root: Path, archive: str) -> Path:
    """The single dataset inside an extracted archive (a file or a 10x folder)."""
    visible = [
        p
        for p in sorted(root.rglob("*"))
        if not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts)
    ]
    mtx_dirs = {p.parent for p in visible if p.is_file() and ".mtx" in p.name.lower()}
    found: list[Path] = sorted(mtx_dirs)
    for p in visible:
        if not p.is_file() or p.parent in mtx_dirs:
            continue
        name = p.name.lower()
        if name.endswith(PICKLE_SUFFIXES):
            continue
        data_suffix = name.endswith((".h5ad", ".h5", ".hdf5", ".csv", ".csv.gz", ".tsv", ".tsv.gz"))
        fragments = "fragments" in name and not name.endswith((".tbi", ".csi"))
        if data_suffix or fragments:
            found.append(p)
    if not found:
        raise InputFormatError(
            f"{archive} holds no supported dataset (found {[p.name for p in visible][:10]}). "
            f"Supported: {'; '.join(SUPPORTED_FORMATS[:-1])}."
        )
    if len(found) > 1:
        raise InputFormatError(
            f"{archive} holds several datasets ({[str(p.relative_to(root)) for p in found][:6]}); "
            "upload one at a time."
        )
    return found[0]


def extract_archive(
    path: str | Path,
    dest: str | Path,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
) -> Path:
    """Safely extract a ``.zip`` or tar archive and return the dataset it holds.

    Before anything is written, every entry is checked: absolute paths, ``..`` components,
    symbolic/hard links and special files are refused, and so are archives whose declared
    uncompressed size exceeds ``max_uncompressed_bytes`` or ``max_ratio`` times the archive's
    size (above 64 MiB). The bytes actually written are counted too, so lying headers do not
    help a decompression bomb.

    Returns
    -------
    Path
        The one dataset inside ``dest``: a file, or a folder holding a 10x ``matrix.mtx``.

    Raises
    ------
    UnsafeInputError
        Path traversal, links, special files or a decompression bomb.
    InputFormatError
        A corrupt archive, or one holding no dataset or several.
    """
    path, dest = Path(path), Path(dest)
    kind = detect_format(path)
    if kind == "zip":
        _extract_zip(path, dest, max_uncompressed_bytes, max_ratio)
    elif kind == "tar":
        _extract_tar(path, dest, max_uncompressed_bytes, max_ratio)
    else:
        raise InputFormatError(f"{path.name} is not a .zip or tar archive.")
    return _find_dataset(dest, path.name)


# --------------------------------------------------------------------------- entry point


def _parse(
    path: Path,
    kind: str,
    *,
    layer: str | None,
    universe: GenomicRegions | None,
    keep: pd.Index | None,
    min_fragments: int,
    max_bytes: int | None,
    liftover: Chain | None = None,
) -> _Parsed:
    if kind == "h5ad":
        return _parse_h5ad(path, layer, max_bytes)
    if layer is not None:
        raise ParameterError(
            f"layer={layer!r} applies to .h5ad files only; {path.name} is a {kind} dataset."
        )
    if kind == "10x_h5":
        return _parse_10x_h5(path, max_bytes)
    if kind == "mtx_dir":
        return _parse_mtx_dir(path, max_bytes)
    if kind == "csv":
        return _parse_table(path, max_bytes)
    if kind == "fragments":
        if universe is None:
            raise ParameterError(
                f"{path.name} is a fragments file: counting it needs a region universe "
                "(pick a reference first)."
            )
        return _parse_fragments(path, universe, keep, min_fragments, max_bytes, 1_000_000, liftover)
    raise InputFormatError(f"{path.name}: archives inside archives are not supported.")


def read_dataset(
    path: str | Path,
    *,
    layer: str | None = None,
    barcodes: str | Path | None = None,
    universe: GenomicRegions | None = None,
    min_fragments: int = 1,
    max_bytes: int | None = None,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    liftover: Chain | None = None,
) -> ad.AnnData:
    """Read any supported scATAC-seq dataset into the normalised AnnData form.

    Parameters
    ----------
    path
        An ``.h5ad``; a 10x ``.h5``; a 10x folder (``matrix.mtx[.gz]``,
        ``barcodes.tsv[.gz]``, ``peaks.bed[.gz]``, peaks x cells); a ``.csv``/``.csv.gz``/
        ``.tsv`` table (cells as rows, first column the cell names, region columns named
        ``chr_start_end``); a fragments file; or a ``.zip``/``.tar.gz``/``.tgz`` holding one.
        Files with other names are recognised by their content.
    layer
        For ``.h5ad``: the layer holding the counts (default ``X``, or the ``counts`` layer
        when ``X`` is absent or empty).
    barcodes
        Optional file with one barcode per line: only these cells are kept.
    universe
        Region universe; required for fragments files, ignored otherwise.
    min_fragments
        For fragments files: keep barcodes with at least this many overlapping fragments.
    max_bytes
        Memory budget checked against the declared size before reading (default: half the
        free memory).
    max_uncompressed_bytes
        For archives: the most they may expand to.
    liftover
        For fragments files: a chain (:func:`scembed_core.liftover.chain_between`) to lift
        the fragments through onto the universe's build before counting; the counts of
        lifted and dropped fragments go to ``uns["scembed_read"]["liftover"]``.

    Returns
    -------
    anndata.AnnData
        Binary float32 CSR ``X`` (cells x peaks), ``var`` with ``chr``/``start``/``end`` and
        ``chr_start_end`` names, the file's ``obs`` plus ``n_peaks``, and
        ``uns["scembed_read"]`` describing the read.

    Raises
    ------
    UnsafeInputError
        Pickle-like files, path traversal, links or decompression bombs in archives.
    InputFormatError
        Unsupported, truncated or corrupt files (subclasses: :class:`CoordinateError`,
        :class:`EmptyDataError`, :class:`DuplicateNamesError`, :class:`CountValueError`).
    MemoryBudgetError
        The declared matrix size exceeds ``max_bytes``.
    """
    path = Path(path)
    kind = detect_format(path)
    keep = _read_barcode_list(barcodes) if barcodes is not None else None
    options = {
        "layer": layer,
        "universe": universe,
        "keep": keep,
        "min_fragments": min_fragments,
        "max_bytes": max_bytes,
        "liftover": liftover,
    }
    if kind not in ("zip", "tar"):
        parsed = _parse(path, kind, **options)
        return _finalize(parsed, source=path.name, keep=keep)
    with tempfile.TemporaryDirectory(prefix="scembed-upload-") as tmp:
        inner = extract_archive(path, tmp, max_uncompressed_bytes=max_uncompressed_bytes)
        inner_kind = detect_format(inner)
        if inner_kind in ("zip", "tar"):
            raise InputFormatError(f"{path.name}: archives inside archives are not supported.")
        parsed = _parse(inner, inner_kind, **options)
        return _finalize(parsed, source=f"{path.name}/{inner.relative_to(tmp)}", keep=keep)
