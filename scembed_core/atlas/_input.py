"""Where a large dataset's cells x peaks matrix lives, and reading one chunk of its rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import CountValueError, DuplicateNamesError, InputFormatError
from ..regions import PeakMapping, binary_signal, map_peaks_to_universe

if TYPE_CHECKING:
    from ..reference import Reference

# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class InputLayout:
    """Where the cells x peaks matrix of a large dataset lives (no data, just the layout)."""

    path: str
    kind: str  # "h5ad" or "zarr"
    key: str  # "X" or "layers/NAME"
    dense: bool
    n_obs: int
    n_vars: int
    nnz: int


@contextmanager
def open_input(path: str, kind: str) -> Iterator[Any]:
    if kind == "h5ad":
        import h5py

        with h5py.File(path, "r") as handle:
            yield handle
    else:
        import zarr

        yield zarr.open_group(path, mode="r")


def _input_kind(path: Path) -> str:
    import h5py

    if path.is_dir() and (
        path.suffix == ".zarr" or (path / ".zgroup").is_file() or (path / "zarr.json").is_file()
    ):
        return "zarr"
    if path.is_file() and h5py.is_hdf5(path):
        return "h5ad"
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    raise InputFormatError(
        f"{path.name} is neither an .h5ad file nor an AnnData .zarr store, which is what the "
        "out-of-core path reads. Convert it first: read_dataset(path).write_h5ad('data.h5ad')."
    )


def _choose_key(group: Any, layer: str | None, name: str) -> str:
    layers = list(group["layers"].keys()) if "layers" in group else []
    if layer is not None:
        if layer not in layers:
            raise InputFormatError(f"{name} has no layer {layer!r}; its layers are {layers}.")
        return f"layers/{layer}"
    if "X" in group:
        return "X"
    if "counts" in layers:
        return "layers/counts"
    raise InputFormatError(f"{name} has no X matrix and no 'counts' layer (layers: {layers}).")


def describe_input(
    path: str | Path, layer: str | None
) -> tuple[InputLayout, pd.DataFrame, pd.DataFrame]:
    """Matrix layout, obs and var of a large dataset, reading no count data."""
    from anndata.io import read_elem

    path = Path(path)
    kind = _input_kind(path)
    try:
        with open_input(str(path), kind) as group:
            if "obs" not in group or "var" not in group:
                raise InputFormatError(f"{path.name} is not AnnData (no obs/var).")
            key = _choose_key(group, layer, path.name)
            elem = group[key]
            encoding = str(elem.attrs.get("encoding-type", elem.attrs.get("h5sparse_format", "")))
            if encoding in ("csr_matrix", "csr"):
                n_obs, n_vars = (
                    int(v) for v in elem.attrs.get("shape", elem.attrs.get("h5sparse_shape"))
                )
                nnz, dense = int(elem["data"].shape[0]), False
            elif encoding in ("csc_matrix", "csc"):
                raise InputFormatError(
                    f"{path.name}: {key} is stored column-major (CSC), so cells cannot be read "
                    "in row chunks. Rewrite it as CSR, e.g. adata.X = adata.X.tocsr() before "
                    "write_h5ad, or with anndata.experimental.concat_on_disk."
                )
            elif hasattr(elem, "shape") and len(elem.shape) == 2:
                n_obs, n_vars = (int(v) for v in elem.shape)
                nnz, dense = n_obs * n_vars, True
            else:
                raise InputFormatError(f"{path.name}: {key} is neither a dense nor a CSR matrix.")
            obs, var = read_elem(group["obs"]), read_elem(group["var"])
    except (InputFormatError, FileNotFoundError):
        raise
    except Exception as exc:
        raise InputFormatError(
            f"{path.name} could not be read as AnnData ({type(exc).__name__}: {exc})."
        ) from exc
    if (len(obs), len(var)) != (n_obs, n_vars):
        raise InputFormatError(
            f"{path.name}: {key} is {n_obs:,} x {n_vars:,} but obs has {len(obs):,} rows and "
            f"var {len(var):,}."
        )
    if n_obs == 0 or n_vars == 0:
        from ..errors import EmptyDataError

        raise EmptyDataError(f"{path.name} has {n_obs} cells and {n_vars} peaks.")
    obs.index = obs.index.astype(str)
    if not obs.index.is_unique:
        raise DuplicateNamesError(
            f"{path.name}: {int(obs.index.duplicated().sum()):,} cell barcodes occur more than "
            "once. Barcodes must be unique; prefix each with its sample."
        )
    source = InputLayout(str(path.resolve()), kind, key, dense, n_obs, n_vars, nnz)
    return source, obs, var


def read_rows(group: Any, source: InputLayout, begin: int, end: int) -> sp.csr_matrix:
    """Binary cells x peaks CSR matrix of cells ``begin:end``, reading only their slice."""
    elem = group[source.key]
    if source.dense:
        x = sp.csr_matrix(np.asarray(elem[begin:end]))
    else:
        indptr = np.asarray(elem["indptr"][begin : end + 1], dtype=np.int64)
        low, high = int(indptr[0]), int(indptr[-1])
        data = np.asarray(elem["data"][low:high])
        indices = np.asarray(elem["indices"][low:high])
        x = sp.csr_matrix((data, indices, indptr - low), shape=(end - begin, source.n_vars))
    if x.dtype.kind not in "biuf":
        raise CountValueError(f"Counts have type {x.dtype}; expected numbers.")
    if x.dtype.kind == "f" and not np.isfinite(x.data).all():
        raise CountValueError(
            f"Cells {begin:,}-{end - 1:,} of {Path(source.path).name} have counts that are not "
            "finite (NaN or infinite). Replace missing values by 0."
        )
    if x.dtype.kind in "if" and (x.data < 0).any():
        raise CountValueError(
            f"Cells {begin:,}-{end - 1:,} of {Path(source.path).name} have negative counts. "
            "Expected raw, non-negative counts, not normalised or scaled values."
        )
    return binary_signal(x)


def peak_mapping(var: pd.DataFrame, source: InputLayout, reference: Reference) -> PeakMapping:
    from ..io import regions_from_var

    name = Path(source.path).name
    regions = regions_from_var(var, name).validate(f"peaks of {name}")
    names = pd.Index(regions.names)
    if not names.is_unique:
        raise DuplicateNamesError(
            f"{name}: {int(names.duplicated().sum()):,} peaks occur more than once; merge "
            "duplicated peaks (e.g. bedtools merge) first."
        )
    return map_peaks_to_universe(regions, reference.model.universe)
