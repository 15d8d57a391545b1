"""Reading results back from an AnnData, the per-cell table, and the ``.h5ad`` file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._keys import (
    CLUSTER,
    CLUSTER_LABEL,
    LABEL,
    PROBABILITIES,
    UMAP,
    distance_column,
    probabilities_key,
)
from ._params import scembed_uns

if TYPE_CHECKING:
    import anndata as ad


def cluster_table_of(adata: ad.AnnData, key: str = CLUSTER_LABEL) -> pd.DataFrame | None:
    """Return the cluster table stored by :func:`write_cluster_table` under ``key``.

    Parameters
    ----------
    adata
        An annotated query (or one written by the Dask path).
    key
        The annotation's ``key_added``.

    Returns
    -------
    pandas.DataFrame or None
        One row per cluster.
    """
    return (scembed_uns(adata).get(key) or {}).get("cluster_table")


def cluster_codes(adata: ad.AnnData, key: str = CLUSTER) -> np.ndarray:
    """Cluster numbers of ``obs[key]`` (``-1`` for ``"Unassigned"``).

    Parameters
    ----------
    adata
        A clustered query.
    key
        The clustering's ``key_added``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` int64.
    """
    names = adata.obs[key].astype(str).to_numpy()
    codes = pd.to_numeric(pd.Series(names), errors="coerce").fillna(-1)
    return codes.to_numpy(dtype=np.int64)


def labels_frame(adata: ad.AnnData, key: str = LABEL) -> pd.DataFrame | None:
    """Read the :func:`~scembed_core.labels.assign.assign_labels` frame back from ``obs``.

    Parameters
    ----------
    adata
        A labelled query.
    key
        The labels' ``key_added``.

    Returns
    -------
    pandas.DataFrame or None
        The label frame (None when ``obs`` has no ``key``).
    """
    from ..labels.assign import PROBABILITY_PREFIX

    if key not in adata.obs:
        return None
    obs = adata.obs
    frame = pd.DataFrame(
        {
            "predicted": obs[f"{key}_predicted"].astype(str).to_numpy(),
            "label": obs[key].astype(str).to_numpy(),
            "confidence": obs[f"{key}_confidence"].to_numpy(dtype=float),
            "mean_similarity": obs[f"{key}_similarity"].to_numpy(dtype=float),
            "mapping_distance": obs[distance_column(key)].to_numpy(dtype=float),
        },
        index=adata.obs_names,
    )
    stem = "scembed" if key == LABEL else key
    if f"{stem}_unknown" in obs:
        frame["unknown"] = obs[f"{stem}_unknown"].to_numpy(dtype=bool)
        frame["unknown_score"] = obs[f"{stem}_unknown_score"].to_numpy(dtype=float)
    uns = scembed_uns(adata)
    classes = list((uns.get(key) or {}).get("classes") or uns.get("label_classes") or [])
    if classes and probabilities_key(key) in adata.obsm:
        probabilities = np.asarray(adata.obsm[probabilities_key(key)], dtype=np.float32)
        for i, name in enumerate(classes):
            frame[PROBABILITY_PREFIX + str(name)] = probabilities[:, i]
    return frame


def probability_csv_name(class_name: str) -> str:
    """CSV column of a class probability: ``B`` (or ``prob:B``) -> ``scembed_prob_B``."""
    from ..labels.assign import PROBABILITY_PREFIX

    return "scembed_prob_" + str(class_name).removeprefix(PROBABILITY_PREFIX)


def cell_table(adata: ad.AnnData) -> pd.DataFrame:
    """Build the per-cell CSV table.

    Every ``scembed_*`` obs column, one ``scembed_prob_<class>`` column per class and
    ``scembed_umap_1``/``scembed_umap_2`` (the position on the reference map).

    Parameters
    ----------
    adata
        The annotated query.

    Returns
    -------
    pandas.DataFrame
        One row per cell, indexed by cell name.
    """
    columns = [c for c in adata.obs.columns if str(c).startswith("scembed_")]
    frame = adata.obs[columns].copy()
    classes = list(scembed_uns(adata).get("label_classes", []))
    if classes and PROBABILITIES in adata.obsm:
        probabilities = np.asarray(adata.obsm[PROBABILITIES], dtype=float)
        for i, name in enumerate(classes):
            frame[probability_csv_name(name)] = probabilities[:, i]
    if UMAP in adata.obsm:
        coords = np.asarray(adata.obsm[UMAP], dtype=float).T
        frame["scembed_umap_1"], frame["scembed_umap_2"] = coords
    frame.index.name = "cell"
    return frame


def h5_plain(value: Any) -> Any:
    """Make a nested structure writable by h5py without changing what it says.

    anndata writes ``None``, numbers, strings and numeric arrays natively; only lists that
    mix types (which h5py cannot store) become lists of strings, and numpy scalars become
    Python numbers. Numeric lists stay numeric and ``None`` stays ``None``.
    """
    if isinstance(value, dict):
        return {str(k): h5_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [h5_plain(v) for v in value]
        if all(isinstance(v, (bool, int, float)) for v in items):
            return np.asarray(items, dtype=None if items else np.float64)
        if all(isinstance(v, str) for v in items):
            return items
        return [str(v) for v in items]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_h5ad(adata: ad.AnnData, path: str | Path) -> Path:
    """Write an annotated ``.h5ad`` (gzip; ``uns`` made h5py-safe without changing it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = adata.copy()
    out.uns = h5_plain(dict(out.uns))
    out.write_h5ad(path, compression="gzip")
    return path


def h5ad_bytes(adata: ad.AnnData) -> bytes:
    """Return the bytes :func:`write_h5ad` would write (for a download button).

    Parameters
    ----------
    adata
        The annotated query.

    Returns
    -------
    bytes
        The ``.h5ad`` file.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="scembed-export-") as tmp:
        return write_h5ad(adata, Path(tmp) / "annotated.h5ad").read_bytes()
