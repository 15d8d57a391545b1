"""The one label rule: every caller (CLI, app, Dask path, benchmarks) labels cells here.

:func:`assign_labels` gives each query cell a probability for every reference class,
either from the reference's label classifier (:mod:`scembed_core.labels.classifier`, the
default, blended with the kNN vote) or from the kNN vote fractions of its nearest
reference cells alone (``"knn"``, :func:`~scembed_core.labels.vote.knn_labels`). The top
class is the prediction; :func:`threshold_labels`, applied here and nowhere else, makes a
cell whose top probability is below ``min_confidence``, or that maps farther than
``max_mapping_distance``, "Unassigned".
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ParameterError, ScEmbedWarning
from .classifier import blend, features_of
from .clusters import ABSENT_WARNING, cluster_table
from .unknown import UNKNOWN
from .vote import (
    LEGACY_MAPPING_DISTANCE_K,
    PROBABILITY_PREFIX,
    UNASSIGNED,
    check_k,
    knn_labels,
    mapping_distance_threshold,
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
    "threshold_labels",
    "probability_columns",
    "probabilities_of",
    "label_classes",
    "cluster_table",
    "explain_label",
]

LABEL_METHODS = ("classifier", "knn")


class LabelModelMissingWarning(ScEmbedWarning):
    """The classifier was asked for but the reference has none: the kNN vote is used."""


def resolve_label_method(
    reference: Reference, method: str = "classifier", label_key: str | None = None
) -> tuple[str, str | None]:
    """Resolve the method that will actually run, with a note when it is not the one asked.

    ``"classifier"`` needs a label model fitted on ``label_key`` (older bundles have
    none, and a model covers one label column); otherwise the kNN vote runs instead.

    Parameters
    ----------
    reference
        The reference labels come from.
    method
        ``"classifier"`` or ``"knn"``.
    label_key
        Reference obs column (default: the reference's first label key).

    Returns
    -------
    tuple
        The method that runs and a note (None when it is the one asked for).
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
    pandas.DataFrame
        One row per cell: ``predicted``, ``label``, ``confidence`` (top probability),
        ``mean_similarity``, ``mapping_distance``, ``unknown`` (bool), ``unknown_score``
        and one ``prob:<class>`` column per reference class (see
        :func:`probabilities_of`). ``label`` is ``"Unknown"`` for cells the rule flags
        (their ``predicted`` keeps the closest class), ``"Unassigned"`` for cells without
        an embedding or below the thresholds.

    Examples
    --------
    >>> import scembed_core as se
    >>> from scembed_core.labels.assign import assign_labels
    >>> reference = se.load_reference("default")  # doctest: +SKIP
    >>> labels = assign_labels(embedding, reference, min_confidence=0.5)  # doctest: +SKIP
    >>> labels["label"].value_counts()  # doctest: +SKIP
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ParameterError(f"min_confidence must be in [0, 1], got {min_confidence}.")
    label_key = label_key or reference.default_label_key
    used, note = resolve_label_method(reference, method, label_key)
    if note and warn:
        warnings.warn(note, LabelModelMissingWarning, stacklevel=2)
    model = reference.label_model if used == "classifier" else None
    k = check_k(reference, k)
    votes = knn_labels(
        embedding,
        reference,
        label_key=label_key,
        k=k,
        neighbors=neighbors,
        classes=None if model is None else model.classes,
    )
    distance = votes.pop("mapping_distance").to_numpy()
    classes = label_classes(votes)
    proba = votes.to_numpy(dtype=np.float64)
    if model is not None:
        features = features_of(embedding, reference.whitening, model.params.space)
        proba = blend(model.predict_proba(features), proba, model.params.knn_weight)
    frame = threshold_labels(
        proba,
        classes,
        distance,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
    )
    from .loto import flag_unknown

    unknown, score = flag_unknown(
        reference, embedding, proba, neighbors, tuple(classes), label_key, n_regions, unknown_rate
    )
    label = frame["label"].to_numpy()
    frame.insert(5, "unknown", unknown)
    frame.insert(6, "unknown_score", score)
    frame["label"] = np.where(unknown & (label != UNASSIGNED), UNKNOWN, label)
    return frame


def threshold_labels(
    probabilities: np.ndarray,
    classes: list[str] | tuple[str, ...],
    mapping_distance: np.ndarray,
    *,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
) -> pd.DataFrame:
    """Turn class probabilities into labels, with ``"Unassigned"``: the one rule.

    Parameters
    ----------
    probabilities
        ``(n_cells, n_classes)``; NaN rows for cells without any (no embedding).
    classes
        Class names in column order.
    mapping_distance
        ``(n_cells,)`` mean cosine distance of each cell to its nearest reference cells.
    min_confidence
        Cells whose top probability is below this become ``"Unassigned"``.
    max_mapping_distance
        Cells farther than this become ``"Unassigned"`` (None: no limit).

    Returns
    -------
    pandas.DataFrame
        ``predicted`` (top class; a tie goes to the first class in column order, i.e.
        alphabetical; ``"Unassigned"`` without probabilities), ``label`` (after the
        thresholds), ``confidence`` (top probability), ``mean_similarity``
        (1 - mapping distance), ``mapping_distance`` and the ``prob:<class>`` columns
        (float32).
    """
    proba = np.asarray(probabilities, dtype=np.float64)
    distance = np.asarray(mapping_distance, dtype=np.float64)
    n_cells, n_classes = proba.shape
    has = np.isfinite(proba).all(axis=1) & (n_classes > 0)
    filled = np.where(has[:, None], proba, -1.0)
    winner = filled.argmax(axis=1) if n_classes else np.zeros(n_cells, dtype=np.int64)
    top = np.where(has, filled.max(axis=1, initial=-1.0), np.nan)
    names = np.asarray(list(classes) or [UNASSIGNED], dtype=object)
    predicted = np.where(has, names[winner], UNASSIGNED)
    keep = has & (top >= min_confidence)
    if max_mapping_distance is not None:
        keep &= distance <= max_mapping_distance
    frame = pd.DataFrame(
        {
            "predicted": predicted,
            "label": np.where(keep, predicted, UNASSIGNED),
            "confidence": top,
            "mean_similarity": 1.0 - distance,
            "mapping_distance": distance,
        }
    )
    probabilities_frame = pd.DataFrame(
        proba.astype(np.float32), columns=[PROBABILITY_PREFIX + c for c in classes]
    )
    return pd.concat([frame, probabilities_frame], axis=1)


def probability_columns(frame: pd.DataFrame) -> list[str]:
    """Return the ``prob:<class>`` columns of a frame from :func:`assign_labels`.

    Parameters
    ----------
    frame
        A label frame.

    Returns
    -------
    list of str
        Its probability columns, in order.
    """
    return [c for c in frame.columns if str(c).startswith(PROBABILITY_PREFIX)]


def label_classes(frame: pd.DataFrame) -> list[str]:
    """Class names in the column order of :func:`probabilities_of`.

    Parameters
    ----------
    frame
        A label frame (:func:`assign_labels`).

    Returns
    -------
    list of str
        The class of each probability column.
    """
    return [c[len(PROBABILITY_PREFIX) :] for c in probability_columns(frame)]


def probabilities_of(frame: pd.DataFrame) -> np.ndarray:
    """Return the class probability matrix of a label frame.

    Parameters
    ----------
    frame
        A label frame (:func:`assign_labels`).

    Returns
    -------
    numpy.ndarray
        ``(n_cells, n_classes)`` float32, columns in the order of :func:`label_classes`.
    """
    return frame[probability_columns(frame)].to_numpy(dtype=np.float32)


def explain_label(
    labels: pd.DataFrame,
    neighbors: tuple[np.ndarray, np.ndarray] | None,
    reference: Reference,
    row: int,
    *,
    label_key: str | None = None,
    top: int = 3,
    k: int | None = None,
) -> dict[str, Any]:
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
    k
        Neighbours the mapping distance was taken over (default: the columns of
        ``neighbors``, else 15), for the reference's own quantiles.

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
    if k is None:
        k = neighbors[0].shape[1] if neighbors is not None else LEGACY_MAPPING_DISTANCE_K
    record = labels.iloc[row]
    return {
        "label": str(record["label"]),
        "predicted": str(record["predicted"]),
        "confidence": float(record["confidence"]),
        "top": top_frame,
        "neighbors": near,
        "mapping_distance": float(record["mapping_distance"]),
        "mapping_distance_q50": mapping_distance_threshold(reference, k, 0.5),
        "mapping_distance_q99": mapping_distance_threshold(reference, k, 0.99),
    }
