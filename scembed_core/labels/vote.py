"""The kNN vote of the nearest reference cells, and how far a cell lies from the reference.

Each query cell's nearest reference cells (cosine, the reference's index from
:mod:`scembed_core.knn`) vote: :func:`vote_fractions` is the one vote counter, used by
the kNN label method (:func:`knn_labels`), by the classifier's kNN blend and by the
label model's calibration. The mean cosine distance to those neighbours is the cell's
mapping distance; :func:`mapping_distance_threshold` is the one place the reference's
own quantiles of it (the 99th percentile) are read. Thresholds to ``"Unassigned"`` are
not applied here but once, in :func:`scembed_core.labels.assign.assign_labels`.
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
    "LEGACY_MAPPING_DISTANCE_K",
    "query_reference_neighbors",
    "self_mapping_distances",
    "mapping_distance_threshold",
    "row_mean_ignoring_nan",
    "vote_fractions",
    "vote",
    "reference_codes",
    "knn_labels",
]

UNASSIGNED = "Unassigned"

#: Column prefix of the class probabilities in a label frame (``prob:<class>``).
PROBABILITY_PREFIX = "prob:"

#: Neighbours over which the mapping-distance quantiles of bundles that do not say were taken.
LEGACY_MAPPING_DISTANCE_K = 15


def self_mapping_distances(
    reference: Reference, k: int, *, neighbors: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Mean cosine distance of each reference cell to its ``k`` nearest other cells.

    The reference's own distribution of mapping distances: a query cell is far from the
    reference when its mapping distance (at the same ``k``) is above a high quantile. The
    one rule: each cell's ``k + 1`` nearest cells in the reference's index, the cell itself
    dropped (:func:`~scembed_core.knn.drop_self_neighbors`), their distances averaged.

    Parameters
    ----------
    reference
        A reference with cells.
    k
        Neighbours per cell (capped at the number of other cells).
    neighbors
        A self-query of the reference's index already made (``(indices, distances)`` of
        every reference cell, in order, with at least ``k + 1`` columns, nearest first, as
        :func:`~scembed_core.knn.knn_query` returns): its first ``k + 1`` columns are used
        instead of a second search (None: the index is searched here).

    Returns
    -------
    numpy.ndarray
        ``(n_reference_cells,)`` mean cosine distances.
    """
    space = reference.cell_space
    k = int(min(k, len(space) - 1))
    if k < 1:
        raise ParameterError("A reference needs at least two cells for mapping distances.")
    if neighbors is None:
        indices, distances = knn_query(reference.index, space, k + 1)
    else:
        indices, distances = (np.asarray(a)[:, : k + 1] for a in neighbors)
        if len(indices) != len(space) or indices.shape[1] < k + 1:
            raise ParameterError(
                f"The neighbour table is {indices.shape[0]:,} x {indices.shape[1]}; the "
                f"reference's mapping distances need {len(space):,} x {k + 1}."
            )
    _, distances = drop_self_neighbors(indices, distances)
    return row_mean_ignoring_nan(distances)


def mapping_distance_threshold(
    reference: Reference, k: int, quantile: float = 0.99
) -> float | None:
    """Return the reference's own ``quantile`` of mapping distances over ``k`` neighbours.

    The only reader of the manifest's ``mapping_distance_q<NN>`` entries. Read from the
    manifest when it was stored for this ``k``; otherwise computed from the reference
    cells once per (reference, k, quantile) and memoized on the reference, so a query
    mapped with 50 neighbours is compared with distances over 50 neighbours.

    Parameters
    ----------
    reference
        The reference.
    k
        Neighbours the mapping distances are taken over (capped at its cell count).
    quantile
        The quantile (0.99: the bar of the outlier flag and the absent-type check).

    Returns
    -------
    float or None
        The distance, or None for a reference without cells.

    Examples
    --------
    >>> import scembed_core as se
    >>> from scembed_core.labels.vote import mapping_distance_threshold
    >>> mapping_distance_threshold(se.load_reference("default"), 15)  # doctest: +SKIP
    0.21...
    """
    if reference.cells is None or reference.index is None:
        return None
    k = int(min(k, reference.n_cells))
    stored_k = int(reference.manifest.get("mapping_distance_k", LEGACY_MAPPING_DISTANCE_K))
    key = f"mapping_distance_q{round(quantile * 100):d}"
    if k == stored_k and key in reference.manifest:
        return float(reference.manifest[key])
    distances = reference.memoized(
        ("self_mapping_distances", k), lambda: self_mapping_distances(reference, k)
    )
    return float(np.quantile(distances, quantile))


def query_reference_neighbors(
    reference: Reference, embedding: np.ndarray, *, k: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference cells of each query cell (indices, cosine distances).

    ``embedding`` holds E-projection embeddings; both sides are compared in the
    reference's analysis space (whitened when the reference has a whitening).

    Parameters
    ----------
    reference
        A reference with cells.
    embedding
        ``(n_cells, dim)`` query E-projection embeddings (NaN rows: no embedding).
    k
        Neighbours per cell.

    Returns
    -------
    tuple of numpy.ndarray
        ``(n_cells, k)`` indices (-1: none) and cosine distances (NaN: none).
    """
    if reference.cells is None or reference.index is None:
        raise ParameterError("This reference has no cells to search.")
    return knn_query(reference.index, reference.analysis_space(embedding), k)


def row_mean_ignoring_nan(values: np.ndarray) -> np.ndarray:
    """Mean of the finite entries of each row; NaN for rows without any (no warning).

    Parameters
    ----------
    values
        A 2-D array.

    Returns
    -------
    numpy.ndarray
        One mean per row.
    """
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    sums = np.where(finite, values, 0).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(values), np.nan), where=counts > 0)


def vote_fractions(neighbor_idx: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Count the votes: the fraction of each cell's neighbours in each class (the one counter).

    Parameters
    ----------
    neighbor_idx
        ``(n_cells, k)`` indices of each cell's neighbours (-1: no neighbour).
    codes
        Class code (``0 .. n_classes - 1``) of every indexed cell; a negative code is a
        cell of no class, which does not vote.
    n_classes
        Number of classes (columns of the result).

    Returns
    -------
    numpy.ndarray
        ``(n_cells, n_classes)`` float64 vote fractions summing to 1 per row; NaN rows for
        cells without a voting neighbour. Vectorized: one bincount over (row, class) pairs.

    Examples
    --------
    >>> import numpy as np
    >>> vote_fractions(np.array([[0, 1, 2], [2, -1, -1]]), np.array([0, 0, 1]), 2)
    array([[0.66666667, 0.33333333],
           [0.        , 1.        ]])
    """
    indices = np.asarray(neighbor_idx)
    codes = np.asarray(codes)
    found = indices >= 0
    cell_codes = np.where(found, codes[np.clip(indices, 0, None)], -1)
    valid = found & (cell_codes >= 0)
    rows = np.broadcast_to(np.arange(len(indices))[:, None], indices.shape)
    flat = rows[valid] * n_classes + cell_codes[valid]
    counts = np.bincount(flat, minlength=len(indices) * n_classes).reshape(-1, n_classes)
    totals = valid.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def vote(neighbor_labels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority code per row of a (cells x k) matrix of neighbour class codes.

    The array form of :func:`vote_fractions` for callers that hold the neighbours' codes
    rather than their indices; ties go to the smallest code.

    Parameters
    ----------
    neighbor_labels
        ``(n_cells, k)`` class codes >= 0.
    valid
        Same shape: which neighbours vote.

    Returns
    -------
    tuple of numpy.ndarray
        The winning code of each row (0 for rows without a vote) and its vote fraction
        (NaN without a vote).
    """
    labels = np.asarray(neighbor_labels)
    n_codes = int(labels[valid].max()) + 1 if np.any(valid) else 1
    positions = np.arange(labels.size).reshape(labels.shape)
    fractions = vote_fractions(np.where(valid, positions, -1), labels.ravel(), n_codes)
    has = np.isfinite(fractions).all(axis=1)
    winner = np.where(has[:, None], fractions, -1.0).argmax(axis=1)
    return winner, np.where(has, fractions[np.arange(len(labels)), winner], np.nan)


def reference_codes(
    reference: Reference, label_key: str | None = None, classes: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """Code every reference cell by its class in a reference label column.

    Parameters
    ----------
    reference
        A reference with labelled cells.
    label_key
        Reference obs column (default: the reference's first label key).
    classes
        The class order to code against (a label model's); default: the column's
        distinct values, sorted.

    Returns
    -------
    tuple
        ``classes`` and ``(n_reference_cells,)`` int codes into it (-1: not a class).

    Raises
    ------
    ParameterError
        The reference has no labelled cells, or no column ``label_key``.
    """
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
    names = reference.cells.obs[label_key].astype(str).to_numpy()
    if classes is None:
        classes = tuple(str(c) for c in pd.Categorical(names).categories)
    return tuple(classes), pd.Index(classes).get_indexer(names)


def knn_labels(
    embedding: np.ndarray,
    reference: Reference,
    *,
    label_key: str | None = None,
    k: int = 15,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    classes: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Class probabilities of query cells from the kNN vote of their reference neighbours.

    No threshold is applied here: :func:`scembed_core.labels.assign.assign_labels`
    turns probabilities into labels, with the thresholds, once.

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` query embeddings (NaN rows: no embedding).
    reference
        Reference with labelled cells.
    label_key
        Reference obs column that votes (default: the reference's first label key).
    k
        Neighbours that vote; capped at the number of reference cells.
    neighbors
        Precomputed ``(indices, distances)`` from :func:`query_reference_neighbors` with at
        least ``k`` columns, to avoid a second search.
    classes
        Class order of the columns (a label model's); default: the column's sorted values.

    Returns
    -------
    pandas.DataFrame
        One ``prob:<class>`` column per class (the vote fractions; NaN rows for cells
        without a neighbour) and ``mapping_distance``, the mean cosine distance to the
        ``k`` neighbours.

    Examples
    --------
    >>> import scembed_core as se
    >>> from scembed_core.labels.vote import knn_labels
    >>> reference = se.load_reference("default")  # doctest: +SKIP
    >>> votes = knn_labels(embedding, reference, k=15)  # doctest: +SKIP
    """
    classes, codes = reference_codes(reference, label_key, classes)
    k = check_k(reference, k)
    if neighbors is None or neighbors[0].shape[1] < k:
        neighbors = query_reference_neighbors(reference, embedding, k=k)
    indices, distances = neighbors[0][:, :k], neighbors[1][:, :k]
    proba = vote_fractions(indices, codes, len(classes))
    frame = pd.DataFrame(proba, columns=[PROBABILITY_PREFIX + c for c in classes])
    frame["mapping_distance"] = row_mean_ignoring_nan(np.where(indices >= 0, distances, np.nan))
    return frame


def check_k(reference: Reference, k: int) -> int:
    """``k`` capped at the reference's cell count (ParameterError below 1).

    Parameters
    ----------
    reference
        The reference searched.
    k
        Neighbours asked for.

    Returns
    -------
    int
        ``min(k, n_reference_cells)``.
    """
    if k < 1:
        raise ParameterError(f"The number of neighbours must be >= 1, got {k}.")
    return int(min(k, max(reference.n_cells, 1)))
