"""A parsed dataset -> the validated, binary AnnData every reader returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import (
    CoordinateError,
    CountValueError,
    DuplicateNamesError,
    EmptyDataError,
    InputFormatError,
)
from ..regions import GenomicRegions, binary_signal

_COORD_COLUMNS = ("chr", "chrom", "chromosome", "seqnames", "start", "end")


@dataclass
class Parsed:
    """A dataset as read from a file, before validation and binarisation."""

    matrix: Any  # cells x peaks, sparse or dense
    regions: GenomicRegions
    obs: pd.DataFrame
    fmt: str
    var: pd.DataFrame | None = None
    obsm: dict = field(default_factory=dict)
    uns: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def as_str(values: Iterable) -> np.ndarray:
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


def check_unique(names: pd.Index, what: str, source: str, hint: str) -> None:
    """Raise :class:`DuplicateNamesError` naming examples if ``names`` repeat."""
    dup = names[names.duplicated()]
    if len(dup):
        examples = ", ".join(repr(x) for x in dup.unique()[:3])
        raise DuplicateNamesError(
            f"{source}: {dup.nunique():,} {what} occur more than once (e.g. {examples}). {hint}"
        )


def _cell_and_col(x: sp.csr_matrix, pos: int) -> tuple[int, int]:
    row = int(np.searchsorted(x.indptr, pos, side="right") - 1)
    return row, int(x.indices[pos])


def check_count_values(x: Any, what: str) -> None:
    """Refuse what the readers refuse: non-numeric, NaN/inf or negative counts.

    Parameters
    ----------
    x
        A dense or sparse cells x peaks matrix (e.g. ``adata.X`` handed to ``tl.project``).
    what
        How messages name it.

    Raises
    ------
    CountValueError
        ``x`` is missing, not numeric, or holds non-finite or negative values.
    """
    if x is None:
        raise CountValueError(f"{what} is empty: cells x peaks counts are needed.")
    values = x.data if sp.issparse(x) else np.asarray(x)
    if values.dtype.kind not in "biuf":
        raise CountValueError(f"{what} has type {values.dtype}; expected counts (numbers).")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise CountValueError(
            f"{what} holds NaN or infinite values; expected non-negative counts (replace "
            "missing values by 0)."
        )
    if values.dtype.kind in "if" and (values < 0).any():
        raise CountValueError(
            f"{what} holds negative values; expected raw, non-negative counts, not normalised "
            "or scaled values."
        )


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
    return binary_signal(x)


def finalize(parsed: Parsed, *, source: str, keep: pd.Index | None = None) -> ad.AnnData:
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
    obs.index = pd.Index(as_str(obs.index), dtype=object)
    check_unique(
        obs.index,
        "cell barcodes",
        source,
        "Barcodes must be unique; if the data merges samples, prefix each barcode with its sample.",
    )
    regions = parsed.regions.validate(f"peaks of {source}")
    names = regions.names
    check_unique(
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
        original = as_str(parsed.var.index)
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


def regions_from_frame(frame: pd.DataFrame, what: str) -> GenomicRegions:
    """Regions from ``chr``/``start``/``end`` columns; refuse fractional coordinates."""
    for column in ("start", "end"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().all() and not np.array_equal(values, np.round(values)):
            raise CoordinateError(f"{what}: some {column} coordinates are not whole numbers.")
    return GenomicRegions.from_frame(frame)


def empty_regions() -> GenomicRegions:
    """A region list with no regions."""
    return GenomicRegions(np.empty(0, str), np.empty(0, np.int64), np.empty(0, np.int64))
