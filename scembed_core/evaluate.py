"""Evaluation against labels the user provides: clustering scores, F1, confusion matrices.

Also the paper's dropout-robustness check (drop a fraction of the non-zeros at random,
re-embed, report how the scores drift).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike

from .errors import ParameterError
from .labels.vote import UNASSIGNED, vote

__all__ = [
    "map_quality",
    "clustering_scores",
    "ClassificationReport",
    "classification_report",
    "drop_nonzeros",
    "dropout_robustness",
]


def _as_str(values: ArrayLike) -> np.ndarray:
    return np.asarray(pd.Series(np.asarray(values)).astype(str), dtype=object)


def clustering_scores(truth: ArrayLike, clusters: ArrayLike) -> dict[str, float]:
    """ARI, AMI and homogeneity of a clustering against ground-truth labels.

    Cells with a missing truth label (NaN) or without a cluster (-1) are left out;
    ``n_cells`` says how many were scored.
    """
    from sklearn import metrics

    truth = pd.Series(np.asarray(truth))
    clusters = pd.Series(np.asarray(clusters))
    keep = truth.notna().to_numpy() & (clusters.astype(str) != "-1").to_numpy()
    if keep.sum() == 0:
        raise ParameterError("No cell has both a truth label and a cluster to score.")
    t, c = _as_str(truth[keep]), _as_str(clusters[keep])
    return {
        "ari": float(metrics.adjusted_rand_score(t, c)),
        "ami": float(metrics.adjusted_mutual_info_score(t, c)),
        "homogeneity": float(metrics.homogeneity_score(t, c)),
        "n_cells": int(keep.sum()),
    }


@dataclass
class ClassificationReport:
    """Label-transfer quality against the user's labels.

    Attributes
    ----------
    accuracy
        Fraction of scored cells whose (mapped) prediction equals the truth.
    macro_f1, weighted_f1
        F1 averaged over truth classes, unweighted and weighted by support.
    per_class
        One row per truth class: precision, recall, f1, support.
    confusion
        Counts, truth classes as rows, predicted labels as columns.
    unmapped_labels
        Predicted labels that the label map did not cover (kept as they are).
    n_unassigned
        Cells predicted ``"Unassigned"`` (scored as wrong).
    """

    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    unmapped_labels: list[str] = field(default_factory=list)
    n_unassigned: int = 0
    n_cells: int = 0

    def summary(self) -> dict:
        """Headline numbers as plain data."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "n_cells": self.n_cells,
            "n_unassigned": self.n_unassigned,
            "unmapped_labels": list(self.unmapped_labels),
        }

    def normalized_confusion(self) -> pd.DataFrame:
        """Confusion matrix with each truth row divided by its total."""
        totals = self.confusion.sum(axis=1).replace(0, np.nan)
        return self.confusion.div(totals, axis=0).fillna(0.0)


def classification_report(
    truth: ArrayLike, predicted: ArrayLike, *, label_map: Mapping[str, str] | None = None
) -> ClassificationReport:
    """Score transferred labels against the user's labels.

    Parameters
    ----------
    truth
        The user's labels (cells with NaN are not scored).
    predicted
        Transferred labels (``"Unassigned"`` counts as a wrong answer).
    label_map
        Optional mapping from reference label names to the user's names (the paper maps
        e.g. ``"CD14+ Mono"`` to ``"Monocytes"`` before computing F1). Predicted labels
        absent from the map keep their name and are listed in ``unmapped_labels``.
    """
    from sklearn import metrics

    truth = pd.Series(np.asarray(truth, dtype=object))
    predicted = pd.Series(_as_str(predicted))
    if len(truth) != len(predicted):
        raise ParameterError(f"{len(truth)} truth labels but {len(predicted)} predictions.")
    keep = truth.notna().to_numpy()
    if keep.sum() == 0:
        raise ParameterError("No cell has a truth label to score against.")
    t = truth[keep].astype(str).to_numpy()
    p = predicted[keep].to_numpy()
    unmapped: list[str] = []
    if label_map:
        mapping = {str(k): str(v) for k, v in label_map.items() if v is not None and str(v) != ""}
        present = set(p) - {UNASSIGNED}
        unmapped = sorted(present - set(mapping))
        p = np.array([mapping.get(x, x) for x in p], dtype=object)
    classes = sorted(set(t))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        t, p, labels=classes, zero_division=0
    )
    per_class = pd.DataFrame(
        {"label": classes, "precision": precision, "recall": recall, "f1": f1, "support": support}
    )
    columns = sorted(set(p) - {UNASSIGNED}) + ([UNASSIGNED] if UNASSIGNED in set(p) else [])
    confusion = pd.crosstab(
        pd.Categorical(t, categories=classes), pd.Categorical(p, categories=columns), dropna=False
    )
    confusion.index.name, confusion.columns.name = "truth", "predicted"
    return ClassificationReport(
        accuracy=float(np.mean(t == p)),
        macro_f1=float(np.mean(f1)),
        weighted_f1=float(np.average(f1, weights=support)) if support.sum() else 0.0,
        per_class=per_class,
        confusion=confusion,
        unmapped_labels=unmapped,
        n_unassigned=int(np.sum(p == UNASSIGNED)),
        n_cells=int(len(t)),
    )


def drop_nonzeros(matrix: sp.spmatrix, fraction: float, *, seed: int = 0) -> sp.csr_matrix:
    """Remove a random ``fraction`` of the non-zero entries (the paper's dropout model)."""
    if not 0.0 <= fraction < 1.0:
        raise ParameterError(f"fraction must be in [0, 1), got {fraction}.")
    x = sp.csr_matrix(matrix, copy=True)
    rng = np.random.default_rng(seed)
    x.data[rng.random(x.nnz) < fraction] = 0
    x.eliminate_zeros()
    return x


def dropout_robustness(
    matrix: sp.spmatrix,
    truth: ArrayLike,
    embed: Callable[[sp.csr_matrix], np.ndarray],
    cluster: Callable[[np.ndarray], np.ndarray],
    *,
    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8),
    seed: int = 0,
) -> pd.DataFrame:
    """Clustering scores as a growing fraction of the signal is dropped.

    Parameters
    ----------
    matrix
        Binary cells x regions matrix.
    truth
        Ground-truth labels of the cells.
    embed
        Maps a (corrupted) matrix to cell embeddings (re-embedding or retraining).
    cluster
        Maps embeddings to cluster labels.
    fractions
        Dropout rates to test.

    Returns
    -------
    One row per rate: ``dropout``, ``ari``, ``ami``, ``homogeneity`` and the drift of each
    score from the no-dropout row.
    """
    rows = []
    for fraction in fractions:
        corrupted = drop_nonzeros(matrix, fraction, seed=seed)
        scores = clustering_scores(truth, cluster(embed(corrupted)))
        rows.append({"dropout": fraction, **scores})
    table = pd.DataFrame(rows)
    for key in ("ari", "ami", "homogeneity"):
        table[f"{key}_drift"] = table[key] - table[key].iloc[0]
    return table


def map_quality(
    query_space: np.ndarray,
    reference_space: np.ndarray,
    query_map: np.ndarray,
    reference_map: np.ndarray,
    reference_labels: ArrayLike,
    query_labels: ArrayLike | None = None,
    *,
    k: int = 15,
) -> dict[str, float]:
    """How well query cells placed on a reference map keep their neighbourhoods.

    ``preservation``: mean fraction of each cell's ``k`` nearest reference cells in the
    analysis space (exact cosine) that are among its ``k`` nearest reference cells on the
    2-D map (Euclidean). ``vote_accuracy``: accuracy, against ``query_labels``, of the
    majority label of the ``k`` nearest reference cells on the map (needs query labels).
    Cells with a non-finite row on either side are left out.
    """
    from sklearn.neighbors import NearestNeighbors

    query_space = np.asarray(query_space, dtype=np.float32)
    query_map = np.asarray(query_map, dtype=np.float32)
    ok = np.isfinite(query_space).all(axis=1) & np.isfinite(query_map).all(axis=1)
    if not ok.any():
        raise ParameterError("No query cell has both an embedding and a map position.")
    space = NearestNeighbors(metric="cosine", algorithm="brute").fit(reference_space)
    on_map = NearestNeighbors().fit(np.asarray(reference_map, dtype=np.float32))
    _, true = space.kneighbors(query_space[ok], n_neighbors=k)
    _, found = on_map.kneighbors(query_map[ok], n_neighbors=k)
    shared = (true[:, :, None] == found[:, None, :]).any(axis=2).sum(axis=1)
    result = {"preservation": float(shared.mean() / k), "n_cells": int(ok.sum())}
    if query_labels is not None:
        categories = pd.Categorical(_as_str(reference_labels))
        neighbour_codes = np.asarray(categories.codes)[found]
        winner, _ = vote(neighbour_codes, np.ones(found.shape, dtype=bool))
        predicted = np.asarray(categories.categories, dtype=object)[winner]
        result["vote_accuracy"] = float((predicted == _as_str(query_labels)[ok]).mean())
    return result
