"""AnnData ``.h5ad`` files: one matrix, metadata read with anndata's element reader."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem

from ..errors import CoordinateError, InputFormatError, ScEmbedError
from ..regions import GenomicRegions, parse_region_names
from ._budget import check_memory_budget
from ._normalize import Parsed, as_str, regions_from_frame


def regions_from_var(var: pd.DataFrame, source: str) -> GenomicRegions:
    """Peak coordinates from ``var`` columns, else from ``var_names``."""
    if len(var) == 0:
        return GenomicRegions(np.empty(0, str), np.empty(0, np.int64), np.empty(0, np.int64))
    has_chrom = any(c in var for c in ("chr", "chrom", "chromosome", "seqnames"))
    if has_chrom and "start" in var and "end" in var:
        return regions_from_frame(var, source)
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
    obs.index = pd.Index(as_str(obs.index), dtype=object)
    var.index = pd.Index(as_str(var.index), dtype=object)
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


def parse_h5ad(path: Path, layer: str | None, max_bytes: int | None) -> Parsed:
    """Return an ``.h5ad`` file as a :class:`Parsed` dataset (one matrix, its metadata)."""
    adata, key = _read_h5ad_parts(path, max_bytes, layer)
    return Parsed(
        matrix=adata.X,
        regions=regions_from_var(adata.var, path.name),
        obs=adata.obs,
        fmt="h5ad",
        var=adata.var,
        obsm=dict(adata.obsm),
        uns=dict(adata.uns),
        info={"matrix": key},
    )
