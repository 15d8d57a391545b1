"""How well predicted probabilities are calibrated: reliability, ECE, accuracy vs coverage.

Used on held-out reference cells when the label classifier is fitted
(:func:`scembed_core.labels.classifier.fit_label_model`) and by the label benchmarks; works on any
``(n_cells, n_classes)`` probability matrix.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CALIBRATION_BINS", "COVERAGE_THRESHOLDS", "calibration_summary"]


CALIBRATION_BINS = 10


COVERAGE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))


def calibration_summary(
    probabilities: np.ndarray, truth_codes: np.ndarray, *, n_bins: int = CALIBRATION_BINS
) -> dict:
    """Reliability curve, expected calibration error and accuracy-versus-coverage.

    Parameters
    ----------
    probabilities
        ``(n_cells, n_classes)`` predicted probabilities of held-out cells.
    truth_codes
        Their true class codes.

    Returns
    -------
    dict
        ``reliability`` (per bin of the top probability: ``bin_lower``, ``bin_upper``,
        ``mean_predicted``, ``accuracy``, ``count``), ``ece`` (count-weighted mean
        ``|accuracy - mean_predicted|``), ``coverage`` (per threshold: ``threshold``,
        ``coverage``, ``accuracy`` of the cells whose top probability reaches it),
        ``accuracy``, ``macro_f1``, ``mean_confidence`` and ``n_cells``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(truth_codes)
    top = p.max(axis=1)
    correct = (p.argmax(axis=1) == truth).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, top, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=top, minlength=n_bins)
    sum_c = np.bincount(bins, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        acc = np.where(count > 0, sum_c / count, np.nan)
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(acc[filled] - mean_p[filled])) / max(len(top), 1))
    thresholds = np.asarray(COVERAGE_THRESHOLDS)
    kept = top[None, :] >= thresholds[:, None]
    n_kept = kept.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        kept_acc = np.where(n_kept > 0, (kept * correct).sum(axis=1) / n_kept, np.nan)
    from sklearn.metrics import f1_score

    return {
        "n_cells": int(len(top)),
        "accuracy": float(correct.mean()) if len(top) else float("nan"),
        "macro_f1": float(f1_score(truth, p.argmax(axis=1), average="macro")),
        "mean_confidence": float(top.mean()) if len(top) else float("nan"),
        "ece": ece,
        "reliability": {
            "bin_lower": edges[:-1].round(4).tolist(),
            "bin_upper": edges[1:].round(4).tolist(),
            "mean_predicted": _json_floats(mean_p),
            "accuracy": _json_floats(acc),
            "count": count.astype(int).tolist(),
        },
        "coverage": {
            "threshold": thresholds.tolist(),
            "coverage": (n_kept / max(len(top), 1)).round(6).tolist(),
            "accuracy": _json_floats(kept_acc),
        },
    }


def _json_floats(values: np.ndarray) -> list:
    """Floats for JSON (NaN as None)."""
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]
