"""Labels per cluster: the one majority vote and the per-cluster table with its checks.

:func:`cluster_vote` is the one majority rule over (cluster x label) counts, used in
memory (:func:`cluster_majority`, :func:`cluster_table`) and chunk by chunk on the Dask
path (:mod:`scembed_core.atlas.cluster`). :func:`cluster_table` adds, per query cluster,
the median mapping distance and top probability and flags clusters that sit far from
every reference cell (median mapping distance above the reference's own 99th percentile,
read through :func:`~scembed_core.labels.vote.mapping_distance_threshold`): possibly a
cell type the reference does not contain (the per-cluster check Azimuth and Symphony
report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .unknown import CLUSTER_SHARE, UNKNOWN
from .vote import LEGACY_MAPPING_DISTANCE_K, UNASSIGNED, mapping_distance_threshold

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = ["ABSENT_WARNING", "cluster_vote", "cluster_majority", "cluster_table"]

ABSENT_WARNING = "possibly a cell type the reference does not contain"


def cluster_vote(
    counts: np.ndarray, names: np.ndarray | list[str], sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vote the majority label of each cluster: the one rule (in memory and on Dask).

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
        label that sorts first (alphabetical order, as in the per-cell vote), so the
        answer does not depend on the order of the cells or on how they were chunked.
        ``"Unassigned"`` when no cell of the cluster votes.
    agreement
        Votes for the winner divided by the cluster's size (0 without votes).

    Examples
    --------
    >>> import numpy as np
    >>> cluster_vote(np.array([[2, 2, 5]]), ["T", "B", "Unassigned"], np.array([9]))
    (array(['B'], dtype=object), array([0.22222222]))
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


def cluster_majority(
    clusters: np.ndarray | pd.Series, labels: np.ndarray | pd.Series
) -> pd.DataFrame:
    """Majority label of each cluster and the fraction of its cells that agree.

    The vote is :func:`cluster_vote`: ``"Unassigned"`` cells do not vote, a tie goes to
    the label that sorts first, and a cluster with only unassigned cells stays
    ``"Unassigned"`` with agreement 0.

    Parameters
    ----------
    clusters
        Cluster of each cell.
    labels
        Label of each cell.

    Returns
    -------
    pandas.DataFrame
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


def cluster_table(
    clusters: np.ndarray | pd.Series,
    labels: pd.DataFrame,
    reference: Reference | None = None,
    *,
    k: int = LEGACY_MAPPING_DISTANCE_K,
    distance_threshold: float | None = None,
) -> pd.DataFrame:
    """Majority label per cluster plus the absent-from-reference check.

    Parameters
    ----------
    clusters
        Cluster of each cell (text or numbers).
    labels
        :func:`~scembed_core.labels.assign.assign_labels` output (``label``,
        ``confidence``, ``mapping_distance``).
    reference
        Supplies the 99th percentile of the reference cells' own mean distance to their
        ``k`` nearest reference cells
        (:func:`~scembed_core.labels.vote.mapping_distance_threshold`).
    k
        Neighbours the ``mapping_distance`` column was taken over (the label call's ``k``),
        so the threshold compares like with like.
    distance_threshold
        Overrides that percentile (the projection's recorded threshold).

    Returns
    -------
    pandas.DataFrame
        ``cluster``, ``label``, ``agreement``, ``n_cells`` (as :func:`cluster_majority`),
        ``median_confidence``, ``median_mapping_distance`` and ``possibly_absent``: True
        when the cluster's median mapping distance is above the threshold, i.e. most of its
        cells lie farther from the reference than nearly all reference cells lie from each
        other; ``unknown_share`` (its cells labelled ``"Unknown"``) and ``unknown``: at
        least half of them, the cluster as a whole then labelled ``"Unknown"``.
    """
    table = cluster_majority(clusters, labels["label"].to_numpy())
    frame = pd.DataFrame(
        {
            "cluster": np.asarray(clusters).astype(str),
            "confidence": labels["confidence"].to_numpy(dtype=float),
            "distance": labels["mapping_distance"].to_numpy(dtype=float),
            "unknown": labels["label"].astype(str).to_numpy() == UNKNOWN,
        }
    )
    medians = frame.groupby("cluster", sort=False)[["confidence", "distance"]].median()
    share = frame.groupby("cluster", sort=False)["unknown"].mean()
    table["median_confidence"] = table["cluster"].map(medians["confidence"]).to_numpy(float)
    table["median_mapping_distance"] = table["cluster"].map(medians["distance"]).to_numpy(float)
    table["unknown_share"] = table["cluster"].map(share).to_numpy(float)
    table["unknown"] = table["unknown_share"].to_numpy() >= CLUSTER_SHARE
    table["label"] = np.where(table["unknown"], UNKNOWN, table["label"].astype(str))
    if distance_threshold is None and reference is not None:
        distance_threshold = mapping_distance_threshold(reference, k)
    if distance_threshold is None:
        table["possibly_absent"] = False
    else:
        table["possibly_absent"] = table["median_mapping_distance"].to_numpy() > distance_threshold
    return table
