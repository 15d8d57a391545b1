"""The reference map and its labels in a compact, memory-mappable form (no anndata).

A bundle's reference map (``obsm["X_umap"]`` of ``cells.h5ad``) and its label columns are
also stored as three small files beside ``cells.h5ad``::

    map_coords.npy        (n_cells, 2) float32 map coordinates
    map_label_codes.npy   (n_label_keys, n_cells) int32 codes into each key's categories
    map_labels.json       {"label_keys": [...], "categories": {key: [...]}, "n_cells": n}

so that a page that only draws the map and the label counts (the app's landing page) reads
them with numpy, memory-mapped, in milliseconds, without importing anndata, h5py, scipy or
numba and without loading the region vectors or the kNN index. :func:`read_summary` gives
that view of a bundle (:class:`ReferenceSummary`); the full :class:`~.reference.Reference`
is loaded as before for everything else. The files are written by
:func:`~.reference.save_reference` and added to an existing bundle by
``scripts/add_compact_map.py``; a bundle without them still loads (``read_summary``
returns ``None`` and callers fall back to the full reference).

This module imports only numpy, pandas and the standard library.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ReferenceBundleError

__all__ = [
    "COMPACT_FILES",
    "CompactCells",
    "ReferenceSummary",
    "compact_arrays",
    "read_compact_cells",
    "read_summary",
    "write_compact_map",
]

COORDS_FILE = "map_coords.npy"
CODES_FILE = "map_label_codes.npy"
LABELS_FILE = "map_labels.json"
#: The three files of the compact map, in the order they are written.
COMPACT_FILES = (COORDS_FILE, CODES_FILE, LABELS_FILE)


@dataclass(frozen=True, eq=False)
class ReferenceSummary:
    """What a bundle's landing view needs: its manifest, map coordinates and labels.

    Attributes
    ----------
    manifest
        The bundle's ``manifest.json``.
    coords
        ``(n_cells, 2)`` float32 map coordinates (a read-only memory map).
    codes
        ``(n_label_keys, n_cells)`` integer codes into ``categories[key]``.
    categories
        Label names per label key (the values of ``cells.obs[key].astype(str)``).
    path
        The bundle folder.

    """

    manifest: dict
    coords: np.ndarray
    codes: np.ndarray
    categories: dict[str, list[str]]
    path: Path

    @property
    def name(self) -> str:
        """Display name (as :attr:`Reference.name <scembed_core.reference.Reference.name>`)."""
        return str(self.manifest.get("name") or self.path.name)

    @property
    def genome(self) -> str:
        """Genome build, e.g. ``hg19``."""
        return str(self.manifest.get("genome") or "unknown")

    @property
    def n_cells(self) -> int:
        """Number of reference cells."""
        return int(self.coords.shape[0])

    @property
    def n_regions(self) -> int:
        """Number of universe regions (from the manifest)."""
        return int(self.manifest.get("n_regions", 0))

    @property
    def label_keys(self) -> list[str]:
        """Label columns, in the manifest's order."""
        return list(self.categories)

    @property
    def default_label_key(self) -> str | None:
        """The label column used unless another is chosen."""
        return self.label_keys[0] if self.label_keys else None

    @property
    def can_ev_project(self) -> bool:
        """Whether new cells can be placed on the map (as ``Reference.can_ev_project``)."""
        return "map.json" in (self.manifest.get("files") or {})

    @property
    def can_transfer_labels(self) -> bool:
        """Whether the bundle has labelled cells (as ``Reference.can_transfer_labels``)."""
        return bool(self.label_keys)

    def read_label_model(self) -> Any:
        """Read the bundle's label classifier (checksums verified), or ``None``.

        Small JSON and ``.npy`` files only (no anndata, no pickle); the same reader the full
        bundle loader uses (:func:`~scembed_core.labels.classifier.load_label_model`).

        Returns
        -------
        LabelModel or None
            ``None`` for a bundle without a classifier.

        Raises
        ------
        ReferenceBundleError
            A label model file that is missing or does not match its checksum.

        """
        from .labels.classifier import LABEL_MODEL_FILES, load_label_model

        files = self.manifest.get("files") or {}
        for name in LABEL_MODEL_FILES.values():
            path = self.path / name
            if name in files and (not path.is_file() or _sha256(path) != files[name]):
                raise ReferenceBundleError(
                    f"Bundle file {name} does not match its checksum in manifest.json. The "
                    "bundle is corrupt or was modified; download it again."
                )
        return load_label_model(self.path, files)

    def labels(self, key: str | None = None) -> np.ndarray:
        """Each reference cell's label under ``key`` as an object array of strings.

        Parameters
        ----------
        key
            A label column (default: :attr:`default_label_key`).

        Returns
        -------
        numpy.ndarray
            ``(n_cells,)`` object array, equal to ``cells.obs[key].astype(str)``.

        """
        key = key or self.default_label_key
        row = self.label_keys.index(key)
        names = np.asarray(self.categories[key], dtype=object)
        return names[np.asarray(self.codes[row])]

    def label_counts(self, key: str | None = None) -> pd.Series:
        """Count the reference cells per label (as ``Reference.label_counts``).

        Parameters
        ----------
        key
            A label column (default: :attr:`default_label_key`).

        Returns
        -------
        pandas.Series
            Counts indexed by label, largest first.

        """
        key = key or self.default_label_key
        if key is None:
            return pd.Series(dtype=int)
        return pd.Series(self.labels(key)).value_counts()


def compact_arrays(cells: Any, label_keys: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Build the compact map of reference cells: coordinates, label codes and their index.

    Parameters
    ----------
    cells
        Reference cells (AnnData) with ``obsm["X_umap"]``.
    label_keys
        Label columns to store (those missing from ``cells.obs`` are skipped).

    Returns
    -------
    tuple
        ``(coords, codes, index)``: float32 ``(n, 2)``, int32 ``(n_keys, n)`` and the JSON
        document of :data:`LABELS_FILE`.

    """
    coords = np.ascontiguousarray(np.asarray(cells.obsm["X_umap"], dtype=np.float32))
    keys = [key for key in label_keys if key in cells.obs]
    codes = np.zeros((len(keys), coords.shape[0]), dtype=np.int32)
    categories: dict[str, list[str]] = {}
    for row, key in enumerate(keys):
        names, inverse = np.unique(cells.obs[key].astype(str).to_numpy(), return_inverse=True)
        codes[row] = inverse
        categories[key] = [str(name) for name in names]
    index = {"n_cells": int(coords.shape[0]), "label_keys": keys, "categories": categories}
    return coords, codes, index


def write_compact_map(folder: str | Path, cells: Any, label_keys: list[str]) -> list[str]:
    """Write the compact map files of ``cells`` into a bundle folder.

    Parameters
    ----------
    folder
        Bundle folder.
    cells
        Reference cells (AnnData) with ``obsm["X_umap"]``.
    label_keys
        Label columns to store.

    Returns
    -------
    list of str
        The names of the files written (:data:`COMPACT_FILES`), for the manifest.

    """
    folder = Path(folder)
    coords, codes, index = compact_arrays(cells, label_keys)
    np.save(folder / COORDS_FILE, coords, allow_pickle=False)
    np.save(folder / CODES_FILE, codes, allow_pickle=False)
    (folder / LABELS_FILE).write_text(json.dumps(index, indent=1))
    return list(COMPACT_FILES)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_summary(folder: str | Path) -> ReferenceSummary | None:
    """Read the compact view of a bundle, or ``None`` when it has no compact map.

    Reads ``manifest.json`` and the three compact files only (each checked against the
    manifest's sha256); the arrays are memory-mapped.

    Parameters
    ----------
    folder
        Bundle folder.

    Returns
    -------
    ReferenceSummary or None
        ``None`` for a bundle without the compact files (written before they existed):
        use the full reference then.

    Raises
    ------
    ReferenceBundleError
        A compact file whose checksum differs from the manifest's, or inconsistent shapes.

    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None  # the full load explains what is wrong with the bundle
    files = manifest.get("files") or {}
    if not all(name in files for name in COMPACT_FILES):
        return None
    for name in COMPACT_FILES:
        path = folder / name
        if not path.is_file() or _sha256(path) != files[name]:
            raise ReferenceBundleError(
                f"Bundle file {name} is missing or does not match its checksum in "
                "manifest.json. The bundle is corrupt or was modified; download it again."
            )
    index = json.loads((folder / LABELS_FILE).read_text())
    coords = np.load(folder / COORDS_FILE, mmap_mode="r", allow_pickle=False)
    codes = np.load(folder / CODES_FILE, mmap_mode="r", allow_pickle=False)
    keys = list(index.get("label_keys") or [])
    categories = {key: list(index["categories"][key]) for key in keys}
    n = int(index.get("n_cells", -1))
    if coords.shape != (n, 2) or codes.shape != (len(keys), n):
        raise ReferenceBundleError(
            f"The compact map's arrays {coords.shape} and {codes.shape} do not match its "
            f"index ({n} cells, {len(keys)} label keys)."
        )
    if codes.size and (
        int(codes.min()) < 0
        or any(int(codes[row].max()) >= len(categories[key]) for row, key in enumerate(keys))
    ):
        raise ReferenceBundleError("The compact map's label codes are out of range.")
    return ReferenceSummary(manifest, coords, codes, categories, folder)


class CompactCells:
    """The reference cells as the projection reads them, without anndata.

    Stands in for ``Reference.cells`` (an AnnData) where only the label columns, the map
    and the cell embeddings are read: a Dask worker's chunk tasks
    (:mod:`scembed_core.atlas`). ``obs`` holds one categorical column per label key,
    ``obsm`` the memory-mapped map coordinates (``X_umap``) and the cell embeddings
    (``X_scembed``).

    Parameters
    ----------
    obs
        Label columns, one row per reference cell.
    obsm
        ``X_umap`` and ``X_scembed``, one row per reference cell.

    """

    def __init__(self, obs: pd.DataFrame, obsm: dict[str, np.ndarray]) -> None:
        self.obs = obs
        self.obsm = obsm
        self.uns: dict = {}

    @property
    def n_obs(self) -> int:
        """Number of reference cells."""
        return len(self.obs)


def read_compact_cells(folder: str | Path) -> CompactCells | None:
    """Read a bundle's reference cells from its compact map and ``cells.h5ad``'s embeddings.

    Label columns and map coordinates come from the compact files (memory-mapped,
    checksums checked by :func:`read_summary`); the cell embeddings
    (``obsm/X_scembed``) are read from ``cells.h5ad`` with h5py alone. Neither anndata nor
    the ``obs`` table's other columns are read.

    Parameters
    ----------
    folder
        Bundle folder (its checksums already verified by the bundle loader).

    Returns
    -------
    CompactCells or None
        ``None`` for a bundle without the compact files (load ``cells.h5ad`` in full then).

    Raises
    ------
    ReferenceBundleError
        ``cells.h5ad`` has no readable ``obsm/X_scembed`` of one row per map cell.

    """
    import h5py

    summary = read_summary(folder)
    if summary is None:
        return None
    path = Path(folder) / "cells.h5ad"
    try:
        with h5py.File(path, "r") as handle:
            stored = handle.get("obsm/X_scembed")
            if not isinstance(stored, h5py.Dataset):
                raise ReferenceBundleError(
                    "cells.h5ad has no obsm['X_scembed'] (reference embeddings)."
                )
            if stored.ndim != 2 or stored.shape[0] != summary.n_cells:
                raise ReferenceBundleError(
                    f"cells.h5ad's obsm['X_scembed'] has shape {stored.shape}; the compact map "
                    f"has {summary.n_cells} cells."
                )
            embeddings = np.asarray(stored[...])
    except OSError as exc:
        raise ReferenceBundleError(
            f"cells.h5ad of the bundle could not be read ({type(exc).__name__}); it is "
            "truncated or corrupt. Download the bundle again."
        ) from exc
    obs = pd.DataFrame(
        {
            key: pd.Categorical.from_codes(
                np.asarray(summary.codes[row]), categories=summary.categories[key]
            )
            for row, key in enumerate(summary.label_keys)
        },
        index=pd.RangeIndex(summary.n_cells).astype(str),
    )
    return CompactCells(obs, {"X_umap": summary.coords, "X_scembed": embeddings})
