"""AnnData ``.h5ad`` files: one matrix, metadata read with anndata's element reader."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem

from ..errors import CoordinateError, InputFormatError, ScEmbedError
from ..regions import GenomicRegions, parse_region_names
from ._budget import check_memory_budget, declared_bytes
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
        if "beyond any genome" in str(exc):
            raise
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


#: An ``obsm`` entry is kept when it is a per-cell table of at most this many columns
#: (embeddings such as X_umap or X_pca); wider ones are not read.
MAX_OBSM_COLUMNS = 256

#: ``uns`` entries are kept when each declares at most this many bytes, all together at most
#: :data:`MAX_UNS_TOTAL`; the analysis reads only small values there (e.g. ``genome``).
MAX_UNS_ENTRY = 1 << 20
MAX_UNS_TOTAL = 16 << 20


def _rows(elem: h5py.Group | h5py.Dataset) -> int | None:
    """Return the declared number of rows of an AnnData element (None if it has none)."""
    if isinstance(elem, h5py.Dataset):
        return int(elem.shape[0]) if elem.shape else None
    shape = elem.attrs.get("shape")
    if shape is not None and len(shape):
        return int(shape[0])
    index = elem.attrs.get("_index")
    if isinstance(index, str) and index in elem and elem[index].shape:
        return int(elem[index].shape[0])
    return None


def _columns(elem: h5py.Group | h5py.Dataset) -> int:
    if isinstance(elem, h5py.Dataset):
        return int(np.prod(elem.shape[1:])) if len(elem.shape) > 1 else 1
    shape = elem.attrs.get("shape")
    if shape is not None and len(shape) > 1:
        return int(shape[1])
    return len(elem.keys())


def _select_side_elements(
    handle: h5py.File, n_obs: int
) -> tuple[list[str], list[str], list[str], int]:
    """Pick the obsm and uns entries worth reading; list those left out; sum their bytes."""
    keep_obsm: list[str] = []
    keep_uns: list[str] = []
    dropped: list[str] = []
    total = 0
    if isinstance(handle.get("obsm"), h5py.Group):
        for name, elem in handle["obsm"].items():
            size = declared_bytes(elem)
            if _rows(elem) == n_obs and _columns(elem) <= MAX_OBSM_COLUMNS:
                keep_obsm.append(name)
                total += size
            else:
                dropped.append(f"obsm/{name}")
    if isinstance(handle.get("uns"), h5py.Group):
        used = 0
        for name, elem in handle["uns"].items():
            size = declared_bytes(elem)
            if size <= MAX_UNS_ENTRY and used + size <= MAX_UNS_TOTAL:
                keep_uns.append(name)
                used += size
            else:
                dropped.append(f"uns/{name}")
        total += used
    for group in ("layers", "obsp", "varm", "varp"):
        if isinstance(handle.get(group), h5py.Group):
            dropped += [f"{group}/{name}" for name in handle[group]]
    return keep_obsm, keep_uns, dropped, total


def _read_entries(group: h5py.Group, names: list[str]) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = read_elem(group[name])
        except Exception:  # an unreadable side element is metadata we can drop
            continue
    return out


def _read_h5ad_parts(
    path: Path, max_bytes: int | None, layer: str | None
) -> tuple[ad.AnnData, str, list[str]]:
    source = path.name
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputFormatError(
            f"{source} is not a readable .h5ad file (truncated or corrupt HDF5: {exc}). "
            "Re-export it with adata.write_h5ad(...) and upload it again."
        ) from exc
    dropped: list[str] = []
    try:
        with handle:
            if "obs" not in handle or "var" not in handle:
                raise InputFormatError(
                    f"{source} is an HDF5 file but not AnnData (no obs/var groups; found "
                    f"{list(handle.keys())[:8]})."
                )
            key = _choose_matrix(handle, layer, source)
            n_obs, n_vars, nnz, dense = _element_extent(handle[key])
            legacy = "encoding-type" not in handle.attrs  # written by anndata < 0.7
            if legacy:  # read whole by anndata: every element counts
                side = declared_bytes(handle)
                keep_obsm, keep_uns = [], []
            else:
                keep_obsm, keep_uns, dropped, side = _select_side_elements(handle, n_obs)
                side += declared_bytes(handle["obs"]) + declared_bytes(handle["var"])
            check_memory_budget(
                n_obs, n_vars, nnz, max_bytes, what=source, dense_bytes=dense + side
            )
            if not legacy:
                obs, var = read_elem(handle["obs"]), read_elem(handle["var"])
                x = read_elem(handle[key])
                obsm = _read_entries(handle["obsm"], keep_obsm) if keep_obsm else {}
                uns = _read_entries(handle["uns"], keep_uns) if keep_uns else {}
        if legacy:
            old = ad.read_h5ad(path)
            obs, var, obsm, uns = old.obs, old.var, dict(old.obsm), dict(old.uns)
            x = old.X if key == "X" else old.layers[key.split("/", 1)[1]]
    except (ScEmbedError, MemoryError):
        raise
    except UnicodeDecodeError as exc:
        raise InputFormatError(
            f"{source}: a cell or peak name is not valid UTF-8 text ({exc.reason} at byte "
            f"{exc.start}). Re-export the names as UTF-8 strings."
        ) from exc
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
    if sp.issparse(x):
        try:
            x.check_format(full_check=True)
        except ValueError as exc:
            raise InputFormatError(
                f"{source}: {key} is a damaged sparse matrix ({exc}); re-export the file."
            ) from exc
    obs.index = pd.Index(as_str(obs.index), dtype=object)
    var.index = pd.Index(as_str(var.index), dtype=object)
    out = ad.AnnData(X=x, obs=obs, var=var)
    for name, value in obsm.items():
        if len(value) == len(obs):
            out.obsm[name] = value
    out.uns = dict(uns)
    return out, key, dropped


def read_h5ad_checked(
    path: str | Path, max_bytes: int | None = None, *, layer: str | None = None
) -> ad.AnnData:
    """Read an ``.h5ad`` file, turning every failure into a typed engine error.

    Only what the app needs is loaded: ``obs``, ``var``, one matrix as ``X`` (the given
    ``layer``; else ``X``; else, when ``X`` is absent or empty, the ``counts`` layer), the
    per-cell ``obsm`` tables of at most :data:`MAX_OBSM_COLUMNS` columns and the small
    ``uns`` entries. Other layers, ``obsp``, ``varm``, ``varp`` and larger side elements are
    never read. Every element's declared size (shape x item size, whatever the compression)
    is checked against ``max_bytes`` before anything is read.
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
    """An ``.h5ad`` file as a :class:`Parsed` dataset (one matrix, its metadata)."""
    adata, key, dropped = _read_h5ad_parts(path, max_bytes, layer)
    return Parsed(
        matrix=adata.X,
        regions=regions_from_var(adata.var, path.name),
        obs=adata.obs,
        fmt="h5ad",
        var=adata.var,
        obsm=dict(adata.obsm),
        uns=dict(adata.uns),
        info={"matrix": key, **({"not_read": dropped[:50]} if dropped else {})},
    )
