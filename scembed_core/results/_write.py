"""The writers: every scEmbed result goes into an AnnData through these functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..labels.vote import UNASSIGNED
from ._keys import (
    ANALYSIS,
    CLUSTER,
    EMBEDDING,
    LABEL,
    PROJECT,
    UMAP,
    distance_column,
    probabilities_key,
)
from ._params import project_params, record, scembed_uns

if TYPE_CHECKING:
    import anndata as ad

    from ..project import Projection
    from ..reference import Reference


def cluster_categorical(codes: np.ndarray) -> pd.Categorical:
    """Cluster numbers as text (``-1``: ``"Unassigned"``), categories in numeric order."""
    codes = np.asarray(codes)
    names = codes.astype(str).astype(object)
    names[codes < 0] = UNASSIGNED
    order = [str(c) for c in sorted(set(codes[codes >= 0].tolist()))]
    categories = order + ([UNASSIGNED] if (codes < 0).any() else [])
    return pd.Categorical(names, categories=categories)


def write_projection(
    adata: ad.AnnData,
    projection: Projection,
    reference: Reference,
    *,
    n_neighbors: int,
    query_genome: str | None = None,
) -> None:
    """Write a :class:`~scembed_core.project.Projection` (``obsm``, per-cell ``obs``, ``uns``).

    Parameters
    ----------
    adata
        The query the projection was made from (written in place).
    projection
        The projection.
    reference
        The reference it was projected onto.
    n_neighbors
        Reference neighbours the projection searched.
    query_genome
        The build the peaks were on before any liftover.
    """
    from ..project import projection_frame

    adata.obsm[EMBEDDING] = np.asarray(projection.embedding, dtype=np.float32)
    for key, value in ((ANALYSIS, projection.analysis), (UMAP, projection.umap)):
        if value is not None:
            adata.obsm[key] = np.asarray(value, dtype=np.float32)
        else:
            adata.obsm.pop(key, None)
    if projection.neighbors is not None:
        adata.obsm["scembed_neighbors"] = np.asarray(projection.neighbors[0])
        adata.obsm["scembed_neighbor_distances"] = np.asarray(projection.neighbors[1])
    for column, values in projection_frame(adata, projection).items():
        adata.obs[column] = values.to_numpy()
    uns = scembed_uns(adata)
    uns["coverage"] = projection.coverage.summary()
    uns["timings"] = {k: float(v) for k, v in projection.timings.items()}
    params = project_params(
        reference,
        ev=projection.umap is not None,
        n_neighbors=n_neighbors,
        mapping_distance_threshold=projection.mapping_distance_threshold,
        query_genome=query_genome,
    )
    record(adata, PROJECT, params)


def write_neighbors(
    adata: ad.AnnData,
    distances: Any,
    connectivities: Any,
    params: dict[str, Any],
    *,
    key_added: str | None = None,
) -> None:
    """Store the query's kNN graph in scanpy's layout (``obsp`` plus ``uns[key]``).

    Parameters
    ----------
    adata
        The query (written in place).
    distances, connectivities
        ``(n_cells, n_cells)`` sparse matrices (:func:`scembed_core.cluster.knn_matrices`).
    params
        ``n_neighbors``, ``use_rep``, ``metric``, ``random_state`` (as scanpy records them).
    key_added
        None: ``obsp["distances"]``, ``obsp["connectivities"]``, ``uns["neighbors"]``;
        else ``obsp["<key>_distances"]``, ``obsp["<key>_connectivities"]``, ``uns[key]``.
    """
    key = key_added or "neighbors"
    prefix = "" if key_added is None else f"{key_added}_"
    adata.obsp[f"{prefix}distances"] = distances
    adata.obsp[f"{prefix}connectivities"] = connectivities
    adata.uns[key] = {
        "connectivities_key": f"{prefix}connectivities",
        "distances_key": f"{prefix}distances",
        "params": dict(params),
    }


def write_clusters(adata: ad.AnnData, codes: np.ndarray, params: dict[str, Any]) -> dict:
    """Write cluster numbers (``-1``: no embedding) under ``params["key_added"]``.

    Parameters
    ----------
    adata
        The query (written in place).
    codes
        ``(n_cells,)`` cluster numbers.
    params
        :func:`cluster_params`.

    Returns
    -------
    dict
        The record in ``uns["scembed"][key_added]``.
    """
    adata.obs[params.get("key_added", CLUSTER)] = cluster_categorical(codes)
    return record(adata, "cluster", params)


def write_labels(adata: ad.AnnData, labels: pd.DataFrame, params: dict[str, Any]) -> dict:
    """Write :func:`~scembed_core.labels.assign.assign_labels` output under ``key_added``.

    Parameters
    ----------
    adata
        The query (written in place).
    labels
        The label frame, one row per cell of ``adata``.
    params
        :func:`label_params`.

    Returns
    -------
    dict
        The record in ``uns["scembed"][key_added]`` (with the class order, ``classes``).
    """
    from ..labels.assign import label_classes, probabilities_of

    key = params.get("key_added", LABEL)
    adata.obs[key] = pd.Categorical(labels["label"].to_numpy())
    adata.obs[f"{key}_predicted"] = pd.Categorical(labels["predicted"].to_numpy())
    adata.obs[f"{key}_confidence"] = labels["confidence"].to_numpy(dtype=float)
    adata.obs[f"{key}_similarity"] = labels["mean_similarity"].to_numpy(dtype=float)
    adata.obs[distance_column(key)] = labels["mapping_distance"].to_numpy(dtype=float)
    if "unknown" in labels:  # the calibrated Unknown rule (scembed_core.labels.unknown)
        stem = "scembed" if key == LABEL else key
        adata.obs[f"{stem}_unknown"] = labels["unknown"].to_numpy(dtype=bool)
        adata.obs[f"{stem}_unknown_score"] = labels["unknown_score"].to_numpy(dtype=float)
    classes = label_classes(labels)
    if classes:
        adata.obsm[probabilities_key(key)] = probabilities_of(labels)
        if key == LABEL:
            scembed_uns(adata)["label_classes"] = classes
    entry = record(adata, "transfer_labels", params)
    entry["classes"] = classes
    return entry


def write_cluster_table(
    adata: ad.AnnData,
    table: pd.DataFrame,
    *,
    cluster_key: str = CLUSTER,
    label_key: str = LABEL,
    key_added: str | None = None,
) -> dict:
    """Write a :func:`~scembed_core.labels.clusters.cluster_table` and each cell's cluster label.

    Parameters
    ----------
    adata
        The query (written in place).
    table
        One row per cluster.
    cluster_key, label_key
        The ``obs`` columns the table was made from.
    key_added
        ``obs`` column of each cell's cluster label (default ``<cluster_key>_label``);
        ``<cluster_key>_possibly_absent`` is written beside it.

    Returns
    -------
    dict
        The record in ``uns["scembed"][key_added]``, with the table as ``cluster_table``.
    """
    key_added = key_added or f"{cluster_key}_label"
    clusters = adata.obs[cluster_key].astype(str).to_numpy()
    names = table["cluster"].astype(str)
    by_cluster = dict(zip(names, table["label"].astype(str), strict=True))
    adata.obs[key_added] = pd.Categorical([by_cluster.get(c, UNASSIGNED) for c in clusters])
    flagged = dict(zip(names, table.get("possibly_absent", False), strict=False))
    adata.obs[f"{cluster_key}_possibly_absent"] = np.asarray(
        [bool(flagged.get(c, False)) for c in clusters], dtype=bool
    )
    params = {"key_added": key_added, "cluster_key": cluster_key, "label_key": label_key}
    entry = record(adata, "annotate_clusters", params)
    entry["cluster_table"] = table.astype({"cluster": str, "label": str})
    return entry


def write_run_facts(
    adata: ad.AnnData,
    *,
    liftover: dict | None = None,
    build_detection: dict | None = None,
    evaluation: dict | None = None,
    fit: dict | None = None,
) -> None:
    """Record how the query was prepared (liftover, detected build), its fit and evaluation."""
    uns = scembed_uns(adata)
    if fit:
        uns["fit"] = dict(fit)  # the dataset verdict (scembed_core.fit)
    lift = liftover or adata.uns.get("scembed_liftover")
    read = adata.uns.get("scembed_read")
    lift = lift or (read.get("liftover") if isinstance(read, dict) else None)
    if lift:
        uns["liftover"] = dict(lift)
    adata.uns.pop("scembed_liftover", None)  # recorded under uns["scembed"]["liftover"]
    if build_detection:
        uns["build_detection"] = dict(build_detection)
    if evaluation:
        uns["evaluation"] = dict(evaluation)
