"""kNN label transfer from labelled reference cells, and per-cluster majority vote.

Each query cell gets the majority label among its ``k`` nearest reference cells (cosine
similarity, the reference's index from :mod:`scembed_core.knn`), a
confidence (the winning vote fraction) and the mean similarity of its neighbours. Cells
whose confidence is too low, that are too far from the reference, or that have no
embedding are reported as ``"Unassigned"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..knn import drop_self_neighbors, knn_query

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = [
    "UNASSIGNED",
    "query_reference_neighbors",
    "self_mapping_distances",
    "mapping_distance_threshold",
    "transfer_labels",
    "cluster_vote",
    "annotate_clusters",
]

UNASSIGNED = "Unassigned"


def self_mapping_distances(reference: Reference, k: int) -> np.ndarray:
    """Mean cosine distance of each reference cell to its ``k`` nearest other cells.

    The reference's own distribution of mapping distances: a query cell is far from the
    reference when its mapping distance (at the same ``k``) is above a high quantile.
    """
    space = reference.cell_space
    k = int(min(k, len(space) - 1))
    if k < 1:
        raise ParameterError("A reference needs at least two cells for mapping distances.")
    indices, distances = knn_query(reference.index, space, k + 1)
    _, distances = drop_self_neighbors(indices, distances)
    return row_mean_ignoring_nan(distances)


#: Neighbours over which the mapping-distance quantiles of bundles that do not say were taken.
LEGACY_MAPPING_DISTANCE_K = 15


def mapping_distance_threshold(
    reference: Reference, k: int, quantile: float = 0.99
) -> float | None:
    """The reference's own ``quantile`` of mapping distances over ``k`` neighbours.

    Read from the manifest when it was stored for this ``k``; otherwise computed from the
    reference cells once per (reference, k, quantile) and memoized on the reference, so a
    query mapped with ``k_neighbors=50`` is compared with distances over 50 neighbours.
    """
    if reference.cells is None or reference.index is None:
        return None
    stored_k = int(reference.manifest.get("mapping_distance_k", LEGACY_MAPPING_DISTANCE_K))
    key = f"mapping_distance_q{round(quantile * 100):d}"
    if k == stored_k and key in reference.manifest:
        return float(reference.manifest[key])
    return reference.memoized(
        ("mapping_distance", int(k), float(quantile)),
        lambda: float(np.quantile(self_mapping_distances(reference, k), quantile)),
    )


def query_reference_neighbors(
    reference: Reference, embedding: np.ndarray, *, k: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference cells of each query cell (indices, cosine distances).

    ``embedding`` holds E-projection embeddings; both sides are compared in the
    reference's analysis space (whitened when the reference has a whitening).
    """
    if reference.cells is None or reference.index is None:
        raise ParameterError("This reference has no cells to search.")
    return knn_query(reference.index, reference.analysis_space(embedding), k)


def row_mean_ignoring_nan(values: np.ndarray) -> np.ndarray:
    """Mean of the finite entries of each row; NaN for rows without any (no warning)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    sums = np.where(finite, values, 0).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(values), np.nan), where=counts > 0)


def vote(neighbor_labels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority label per row of a (cells x k) label-code matrix, and its vote fraction.

    Codes are integers >= 0; ``valid`` marks usable neighbours. Ties go to the smallest
    code (deterministic). Vectorized with one bincount over (row, code) pairs.
    """
    n_rows, _ = neighbor_labels.shape
    n_codes = int(neighbor_labels[valid].max()) + 1 if valid.any() else 1
    rows = np.broadcast_to(np.arange(n_rows)[:, None], neighbor_labels.shape)
    flat = rows[valid] * n_codes + neighbor_labels[valid]
    counts = np.bincount(flat, minlength=n_rows * n_codes).reshape(n_rows, n_codes)
    winner = counts.argmax(axis=1)
    totals = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = counts[np.arange(n_rows), winner] / totals
    return winner, np.where(totals > 0, fraction, np.nan)


def transfer_labels(
    embedding: np.ndarray,
    reference: Reference,
    *,
    label_key: str | None = None,
    k: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Transfer labels from reference cells to query cells by kNN majority vote.

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` query embeddings (NaN rows: no embedding).
    reference
        Reference with labelled cells.
    label_key
        Reference obs column to transfer (default: the reference's first label key).
    k
        Neighbours that vote; capped at the number of reference cells.
    min_confidence
        Cells whose winning vote fraction is below this become ``"Unassigned"``.
    max_mapping_distance
        Cells whose mean cosine distance to their neighbours exceeds this become
        ``"Unassigned"`` (None: no limit).
    neighbors
        Precomputed ``(indices, distances)`` from :func:`query_reference_neighbors` with at
        least ``k`` columns, to avoid a second search.

    Returns
    -------
    DataFrame with one row per query cell: ``predicted`` (majority label before
    thresholds), ``label`` (after thresholds), ``confidence`` (vote fraction),
    ``mean_similarity`` (mean cosine similarity of the neighbours) and
    ``mapping_distance`` (mean cosine distance).
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ParameterError(f"min_confidence must be in [0, 1], got {min_confidence}.")
    if k < 1:
        raise ParameterError(f"k must be >= 1, got {k}.")
    if not reference.can_transfer_labels:
        raise ParameterError(
            "This reference has no labelled cells, so labels cannot be transferred. "
            "Build a full reference from a labelled dataset first."
        )
    label_key = label_key or reference.default_label_key
    if label_key not in reference.cells.obs:
        raise ParameterError(
            f"Label column {label_key!r} is not in the reference; choose one of "
            f"{reference.label_keys}."
        )
    k = min(k, reference.n_cells)
    if neighbors is not None and neighbors[0].shape[1] >= k:
        indices, distances = neighbors[0][:, :k], neighbors[1][:, :k]
    else:
        indices, distances = query_reference_neighbors(reference, embedding, k=k)
    categories = pd.Categorical(reference.cells.obs[label_key].astype(str))
    codes = np.asarray(categories.codes)
    valid = indices >= 0
    neighbor_codes = np.where(valid, codes[np.clip(indices, 0, None)], 0)
    winner, confidence = vote(neighbor_codes, valid)
    has_vote = valid.any(axis=1)
    names = np.asarray(categories.categories, dtype=object)
    predicted = np.where(has_vote, names[winner], UNASSIGNED)
    mapping_distance = row_mean_ignoring_nan(np.where(valid, distances, np.nan))
    keep = has_vote & (confidence >= min_confidence)
    if max_mapping_distance is not None:
        keep &= mapping_distance <= max_mapping_distance
    return pd.DataFrame(
        {
            "predicted": predicted,
            "label": np.where(keep, predicted, UNASSIGNED),
            "confidence": confidence,
            "mean_similarity": 1.0 - mapping_distance,
            "mapping_distance": mapping_distance,
        }
    )


def cluster_vote(
    counts: np.ndarray, names: np.ndarray | list[str], sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The one per-cluster majority rule (in memory and on the Dask path).

    Parameters
    ----------
    counts
        ``(n_clusters, n_labels)`` number of cells of each cluster with each label.
    names
        The label of each column; ``"Unassigned"`` columns do not vote.
    sizes
        ``(n_clusters,)`` cells per cluster, all of them (unassigned cells included).

    Returns
    -------
    labels
        ``(n_clusters,)`` object array: the label with the most votes. A tie goes to the
        label that sorts first (alphabetical order, as in the per-cell :func:`vote`), so
        the answer does not depend on the order of the cells or on how they were chunked.
        ``"Unassigned"`` when no cell of the cluster votes.
    agreement
        Votes for the winner divided by the cluster's size (0 without votes).
    """
    names = np.asarray(names, dtype=object).astype(str)
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(names, kind="stable")
    ordered = counts[:, order] * (names[order] != UNASSIGNED)[None, :]
    if ordered.shape[1] == 0:
        ordered = np.zeros((len(counts), 1), dtype=np.int64)
        order = np.zeros(1, dtype=np.int64)
        names = np.asarray([UNASSIGNED], dtype=object)
    winner = ordered.argmax(axis=1)
    votes = ordered[np.arange(len(ordered)), winner]
    labels = np.where(votes > 0, names[order][winner], UNASSIGNED).astype(object)
    sizes = np.asarray(sizes, dtype=np.float64)
    agreement = np.where(votes > 0, votes / np.maximum(sizes, 1.0), 0.0)
    return labels, agreement


def annotate_clusters(
    clusters: np.ndarray | pd.Series, labels: np.ndarray | pd.Series
) -> pd.DataFrame:
    """Majority label of each cluster and the fraction of its cells that agree.

    The vote is :func:`cluster_vote`: ``"Unassigned"`` cells do not vote, a tie goes to
    the label that sorts first, and a cluster with only unassigned cells stays
    ``"Unassigned"`` with agreement 0.

    Returns
    -------
    DataFrame
        ``cluster``, ``label``, ``agreement``, ``n_cells``; one row per cluster, numbered
        clusters in numeric order first.
    """
    cluster_codes, cluster_names = pd.factorize(np.asarray(clusters).astype(str))
    label_codes, label_names = pd.factorize(np.asarray(labels).astype(str))
    counts = np.zeros((len(cluster_names), len(label_names)), dtype=np.int64)
    np.add.at(counts, (cluster_codes, label_codes), 1)
    sizes = np.bincount(cluster_codes, minlength=len(cluster_names))
    winners, agreement = cluster_vote(counts, np.asarray(label_names), sizes)
    table = pd.DataFrame(
        {
            "cluster": np.asarray(cluster_names, dtype=object),
            "label": winners,
            "agreement": agreement,
            "n_cells": sizes,
        }
    )
    order = pd.to_numeric(table["cluster"], errors="coerce")
    return (
        table.assign(_o=order)
        .sort_values(["_o", "cluster"])
        .drop(columns="_o")
        .reset_index(drop=True)
    )
