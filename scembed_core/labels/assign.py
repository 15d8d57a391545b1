"""The one label rule: every caller (CLI, app, Dask path, benchmarks) labels cells here.

:func:`assign_labels` gives each query cell a probability for every reference class,
either from the reference's label classifier (:mod:`scembed_core.labels.classifier`, the
default) or from the kNN vote fractions of its nearest reference cells (``"knn"``, the
earlier default). The top class is the prediction; a cell whose top probability is below
``min_confidence``, or that maps farther than ``max_mapping_distance``, is "Unassigned".

:func:`cluster_table` adds, per query cluster, the median mapping distance and top
probability and flags clusters that sit far from every reference cell (median mapping
distance above the reference's own 99th percentile): possibly a cell type the reference
does not contain (the per-cluster check Azimuth and Symphony report).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ParameterError, ScEmbedWarning
from .classifier import blend, features_of, knn_probabilities
from .unknown import CLUSTER_SHARE, UNKNOWN
from .vote import (
    LEGACY_MAPPING_DISTANCE_K,
    UNASSIGNED,
    annotate_clusters,
    mapping_distance_threshold,
    query_reference_neighbors,
    transfer_labels,
)

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = [
    "LABEL_METHODS",
    "UNKNOWN",
    "PROBABILITY_PREFIX",
    "ABSENT_WARNING",
    "LabelModelMissingWarning",
    "resolve_label_method",
    "assign_labels",
    "probability_columns",
    "probabilities_of",
    "label_classes",
    "cluster_table",
    "explain_label",
]

LABEL_METHODS = ("classifier", "knn")
PROBABILITY_PREFIX = "prob:"
ABSENT_WARNING = "possibly a cell type the reference does not contain"


class LabelModelMissingWarning(ScEmbedWarning):
    """The classifier was asked for but the reference has none: the kNN vote is used."""


def resolve_label_method(
    reference: Reference, method: str = "classifier", label_key: str | None = None
) -> tuple[str, str | None]:
    """The method that will actually run, and a note when it differs from the request.

    ``"classifier"`` needs a label model fitted on ``label_key`` (older bundles have
    none, and a model covers one label column); otherwise the kNN vote runs instead.
    """
    if method not in LABEL_METHODS:
        raise ParameterError(f"label method must be one of {LABEL_METHODS}, got {method!r}.")
    if method == "knn":
        return "knn", None
    model = getattr(reference, "label_model", None)
    label_key = label_key or reference.default_label_key
    if model is None:
        return "knn", (
            f"The reference {reference.name} has no label classifier (it was built before "
            "scEmbed stored one), so labels come from the 15-nearest-neighbour vote. "
            "Rebuild the reference to get calibrated class probabilities."
        )
    if model.label_key != label_key:
        return "knn", (
            f"The reference's label classifier was fitted on {model.label_key!r}, not "
            f"{label_key!r}, so labels for {label_key!r} come from the kNN vote."
        )
    return "classifier", None


def _reference_codes(reference: Reference, label_key: str, classes: tuple[str, ...]) -> np.ndarray:
    """Class code of every reference cell in the order of ``classes`` (-1: not a class)."""
    names = reference.cells.obs[label_key].astype(str).to_numpy()
    lookup = pd.Index(classes)
    return lookup.get_indexer(names)


def assign_labels(
    embedding: np.ndarray,
    reference: Reference,
    *,
    method: str = "classifier",
    label_key: str | None = None,
    k: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    warn: bool = True,
    n_regions: np.ndarray | None = None,
    unknown_rate: float | None = None,
) -> pd.DataFrame:
    """Label query cells with class probabilities (classifier or kNN vote).

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` query E-projection embeddings (NaN rows: no embedding).
    reference
        A reference with labelled cells.
    method
        ``"classifier"`` (the reference's label model; falls back to ``"knn"`` with a
        :class:`LabelModelMissingWarning` when it has none) or ``"knn"``.
    label_key
        Reference obs column (default: the reference's first label key).
    k
        Nearest reference cells for the kNN vote, the blend and the mapping distance.
    min_confidence
        Cells whose top class probability is below this become ``"Unassigned"``.
    max_mapping_distance
        Cells whose mean cosine distance to their neighbours exceeds this become
        ``"Unassigned"`` (None: no limit).
    neighbors
        Precomputed ``(indices, distances)`` with at least ``k`` columns.
    warn
        Emit the fallback warning (callers that show the note themselves pass False).
    n_regions
        Regions per cell (coverage): the Unknown rule judges a cell against reference
        cells thinned to its coverage. None: full-coverage thresholds.
    unknown_rate
        Strictness of the Unknown rule (:mod:`scembed_core.labels.unknown`): the share of
        known cells it may call Unknown. None: the reference's calibrated rate; 0: off.

    Returns
    -------
    DataFrame
        One row per cell: ``predicted``, ``label``, ``confidence`` (top probability),
        ``mean_similarity``, ``mapping_distance``, ``unknown`` (bool), ``unknown_score``
        and one ``prob:<class>`` column per reference class (see
        :func:`probabilities_of`). ``label`` is ``"Unknown"`` for cells the rule flags
        (their ``predicted`` keeps the closest class), ``"Unassigned"`` for cells without
        an embedding or below the thresholds.
    """
    label_key = label_key or reference.default_label_key
    used, note = resolve_label_method(reference, method, label_key)
    if note and warn:
        warnings.warn(note, LabelModelMissingWarning, stacklevel=2)
    k = min(int(k), max(reference.n_cells, 1))
    if neighbors is None or neighbors[0].shape[1] < k:
        if not reference.can_transfer_labels:
            transfer_labels(embedding, reference, label_key=label_key, k=k)  # its error
        neighbors = query_reference_neighbors(reference, embedding, k=k)
    neighbors = (neighbors[0][:, :k], neighbors[1][:, :k])
    frame = transfer_labels(
        embedding,
        reference,
        label_key=label_key,
        k=k,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        neighbors=neighbors,
    )
    if used == "classifier":
        model = reference.label_model
        classes = model.classes
        codes = _reference_codes(reference, label_key, classes)
        proba = model.predict_proba(features_of(embedding, reference.whitening, model.params.space))
        if model.params.knn_weight > 0:
            knn = knn_probabilities(neighbors[0], codes, len(classes))
            proba = blend(proba, knn, model.params.knn_weight)
    else:
        classes = tuple(pd.Categorical(reference.cells.obs[label_key].astype(str)).categories)
        codes = _reference_codes(reference, label_key, classes)
        proba = knn_probabilities(neighbors[0], codes, len(classes))
    if used == "classifier":
        has = np.isfinite(proba).all(axis=1)
        top = np.where(has, np.nanmax(np.where(has[:, None], proba, 0.0), axis=1), np.nan)
        winner = np.where(has[:, None], proba, -1.0).argmax(axis=1)
        names = np.asarray(classes, dtype=object)
        predicted = np.where(has, names[winner], UNASSIGNED)
        keep = has & (top >= min_confidence)
        if max_mapping_distance is not None:
            keep &= frame["mapping_distance"].to_numpy() <= max_mapping_distance
        frame["predicted"] = predicted
        frame["label"] = np.where(keep, predicted, UNASSIGNED)
        frame["confidence"] = top
    from .loto import flag_unknown

    unknown, score = flag_unknown(
        reference, embedding, proba, neighbors, tuple(classes), label_key, n_regions, unknown_rate
    )
    frame["unknown"] = unknown
    frame["unknown_score"] = score
    frame["label"] = np.where(
        unknown & (frame["label"].to_numpy() != UNASSIGNED), UNKNOWN, frame["label"].to_numpy()
    )
    probabilities = pd.DataFrame(
        proba.astype(np.float32), columns=[PROBABILITY_PREFIX + c for c in classes]
    )
    return pd.concat([frame, probabilities], axis=1)


def probability_columns(frame: pd.DataFrame) -> list[str]:
    """The ``prob:<class>`` columns of a frame from :func:`assign_labels`."""
    return [c for c in frame.columns if str(c).startswith(PROBABILITY_PREFIX)]


def label_classes(frame: pd.DataFrame) -> list[str]:
    """Class names in the column order of :func:`probabilities_of`."""
    return [c[len(PROBABILITY_PREFIX) :] for c in probability_columns(frame)]


def probabilities_of(frame: pd.DataFrame) -> np.ndarray:
    """``(n_cells, n_classes)`` float32 probability matrix of :func:`assign_labels`."""
    return frame[probability_columns(frame)].to_numpy(dtype=np.float32)


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
        :func:`assign_labels` output (``label``, ``confidence``, ``mapping_distance``).
    reference
        Supplies the 99th percentile of the reference cells' own mean distance to their
        ``k`` nearest reference cells (:func:`~scembed_core.labels.vote.mapping_distance_threshold`).
    k
        Neighbours the ``mapping_distance`` column was taken over (the label call's ``k``),
        so the threshold compares like with like.
    distance_threshold
        Overrides that percentile.

    Returns
    -------
    DataFrame
        ``cluster``, ``label``, ``agreement``, ``n_cells`` (as
        :func:`~scembed_core.labels.vote.annotate_clusters`), ``median_confidence``,
        ``median_mapping_distance`` and ``possibly_absent``: True when the cluster's
        median mapping distance is above the threshold, i.e. most of its cells lie
        farther from the reference than nearly all reference cells lie from each other.
    """
    table = annotate_clusters(clusters, labels["label"].to_numpy())
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
        distance_threshold = mapping_distance_threshold(reference, int(min(k, reference.n_cells)))
    if distance_threshold is None:
        table["possibly_absent"] = False
    else:
        table["possibly_absent"] = table["median_mapping_distance"].to_numpy() > distance_threshold
    return table


def explain_label(
    labels: pd.DataFrame,
    neighbors: tuple[np.ndarray, np.ndarray] | None,
    reference: Reference,
    row: int,
    *,
    label_key: str | None = None,
    top: int = 3,
) -> dict:
    """Why one cell got its label: top classes, its nearest reference cells, its distance.

    Parameters
    ----------
    labels
        :func:`assign_labels` output.
    neighbors
        The ``(indices, distances)`` of the reference neighbours used for it (or None).
    reference
        The reference the cells were labelled from.
    row
        Position of the cell in ``labels``.
    label_key
        Reference obs column of the neighbours' labels (default: the reference's first).
    top
        Number of classes to list.

    Returns
    -------
    dict
        ``label``, ``predicted``, ``confidence``, ``top`` (DataFrame ``class``,
        ``probability``), ``neighbors`` (DataFrame ``label``, ``n_neighbors``),
        ``mapping_distance`` and the reference's own ``mapping_distance_q50``/``_q99``.
    """
    if not 0 <= row < len(labels):
        raise ParameterError(f"Cell position {row} is outside 0..{len(labels) - 1}.")
    label_key = label_key or reference.default_label_key
    proba = probabilities_of(labels.iloc[[row]])[0]
    names = np.asarray(label_classes(labels), dtype=object)
    if np.isfinite(proba).all():
        order = np.argsort(-proba, kind="stable")[:top]
        top_frame = pd.DataFrame({"class": names[order], "probability": proba[order]})
    else:
        top_frame = pd.DataFrame({"class": [], "probability": []})
    near = pd.DataFrame({"label": [], "n_neighbors": []})
    if neighbors is not None and reference.cells is not None:
        found = np.asarray(neighbors[0][row])
        found = found[found >= 0]
        if found.size:
            cell_labels = reference.cells.obs[label_key].astype(str).to_numpy()[found]
            counts = pd.Series(cell_labels).value_counts()
            near = pd.DataFrame({"label": counts.index, "n_neighbors": counts.to_numpy()})
    manifest = getattr(reference, "manifest", None) or {}
    record = labels.iloc[row]
    return {
        "label": str(record["label"]),
        "predicted": str(record["predicted"]),
        "confidence": float(record["confidence"]),
        "top": top_frame,
        "neighbors": near,
        "mapping_distance": float(record["mapping_distance"]),
        "mapping_distance_q50": manifest.get("mapping_distance_q50"),
        "mapping_distance_q99": manifest.get("mapping_distance_q99"),
    }
