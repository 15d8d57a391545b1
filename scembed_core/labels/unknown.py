"""Cells of types the reference lacks: the ``Unknown`` rule, calibrated per reference.

A reference can only name the types it was trained on; a query cell of another type still
gets the closest of them. This module decides which cells to call ``"Unknown"`` (distinct
from ``"Unassigned"``: no embedding at all) with a rule calibrated on the reference itself,
by **leave-one-type-out**:

1. a stratified share of the reference cells is held out; the kNN search (vote fractions,
   mapping distance) and the class centres see only the rest. The reference's stored
   label classifier is used as it is: it was fitted on all cells, held-out ones included
   (a refit per calibration costs minutes of lbfgs on a busy machine), so its
   probabilities are somewhat optimistic on these cells; the signals that use only the
   kNN search are not;
2. each type in turn is hidden: its class is removed from the classifier's softmax (the
   other coefficients stay as fitted) and its cells from the kNN search and the class
   centres; its held-out cells are then scored as a query would be, next to the held-out
   cells of the known types scored with every type present;
3. candidate signals per cell: ``uncertainty`` (1 - top probability), ``entropy``,
   ``distance`` (mean cosine distance to the nearest reference cells, the mapping
   distance), ``mahalanobis`` (distance to the nearest class centre in the analysis space,
   pooled within-class covariance) and ``combined`` (the sum of the robust z-scores of
   uncertainty, distance and Mahalanobis);
4. each signal's threshold is its quantile on the known cells at the target rate of false
   positives (5% by default), **per coverage level**: the held-out cells are also thinned to
   1/2 ... 1/16 of their regions, so a query cell with 20 regions is judged against
   reference cells thinned to about 20 regions (thresholds interpolated on log region
   counts);
5. the signal catching the most hidden-type cells (mean recall over the hidden types) at
   that rate wins. Its recall (per type) and false-positive rate (two-fold: thresholds from
   one half of the known cells, rate measured on the other) are stored with it.

The same thinned held-out cells give the curve "regions per cell -> expected accuracy"
that the dataset verdict (:mod:`scembed_core.fit`) quotes.

The calibration lives in :mod:`scembed_core.labels.loto`. Everything is stored as plain
JSON under the manifest key ``"trust"`` (see
:func:`~scembed_core.labels.loto.calibrate_trust`); a bundle without it gets the rule computed from its stored cells
when first used (without thinning, so not coverage-aware; memoized on the reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ParameterError

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = [
    "UNKNOWN",
    "TRUST_KEY",
    "SIGNALS",
    "UnknownRule",
    "ClassStats",
    "class_stats",
    "cell_signals",
    "unknown_scores",
    "describe_rule",
    "robust_scaling",
    "with_combined",
]

UNKNOWN = "Unknown"
TRUST_KEY = "trust"
SIGNALS = ("uncertainty", "entropy", "distance", "mahalanobis", "combined")
#: False-positive rates at which each signal's known-cell quantile is stored (slider stops)
RATES = (0.5, 0.3, 0.2, 0.15, 0.1, 0.075, 0.05, 0.04, 0.03, 0.02, 0.01, 0.005, 0.001)
LEVELS = (1.0, 0.5, 0.25, 0.125, 0.0625)
TARGET_FPR = 0.05
#: A query cluster with at least this share of Unknown cells is flagged as a whole
CLUSTER_SHARE = 0.5
_COMBINED = ("uncertainty", "distance", "mahalanobis")


@dataclass(frozen=True)
class UnknownRule:
    """A calibrated Unknown rule: a signal and its per-coverage thresholds.

    Attributes
    ----------
    signal
        The chosen signal (one of :data:`SIGNALS`).
    rates
        False-positive rates on known cells at which thresholds are stored.
    regions
        Median regions per cell of each coverage level (descending).
    thresholds
        ``thresholds[level][j]``: the known cells' score quantile at ``1 - rates[j]``.
    target_fpr
        The calibrated rate (the default strictness).
    recall, fpr
        Mean recall over the hidden types and false-positive rate on known cells at it.
    scaling
        Median and spread of the combined signal's parts (``{name: [centre, scale]}``).
    info
        Everything else measured (per-type recall, recall per rate, per level; the source).
    """

    signal: str
    rates: tuple[float, ...]
    regions: tuple[float, ...]
    thresholds: tuple[tuple[float, ...], ...]
    target_fpr: float
    recall: float
    fpr: float
    scaling: dict
    info: dict

    @property
    def coverage_aware(self) -> bool:
        """Whether thresholds depend on a cell's region count (more than one level)."""
        return len(self.regions) > 1

    def threshold(self, rate: float, n_regions: np.ndarray | None = None) -> np.ndarray | float:
        """Score threshold at false-positive ``rate``, per cell when ``n_regions`` is given.

        Parameters
        ----------
        rate
            Share of known cells allowed to be called Unknown (within the stored range).
        n_regions
            Regions per cell; thresholds are interpolated on log region counts between
            the coverage levels (clipped at the ends). None: the full-coverage threshold.

        Returns
        -------
        float or ndarray
            The threshold (one per cell when ``n_regions`` is given).
        """
        order = np.argsort(self.rates)
        rates = np.asarray(self.rates)[order]
        per_level = np.array(
            [np.interp(rate, rates, np.asarray(t)[order]) for t in self.thresholds]
        )
        if n_regions is None or len(per_level) == 1:
            value = float(per_level[0])
            return value if n_regions is None else np.full(len(n_regions), value)
        x = np.log(np.maximum(np.asarray(self.regions, dtype=float), 1.0))[::-1]
        cells = np.log(np.maximum(np.asarray(n_regions, dtype=float), 1.0))
        return np.interp(cells, x, per_level[::-1])

    def recall_at(self, rate: float) -> float:
        """Measured mean recall over hidden types at ``rate`` (interpolated)."""
        curve = self.info.get("recall_curve") or {}
        if not curve:
            return self.recall
        rates = np.array(sorted(float(r) for r in curve))
        values = np.array([curve[str(r)] if str(r) in curve else curve[r] for r in rates])
        return float(np.interp(rate, rates, values))

    def to_dict(self) -> dict:
        """Plain JSON data."""
        return {
            "signal": self.signal,
            "rates": list(self.rates),
            "regions": list(self.regions),
            "thresholds": [list(t) for t in self.thresholds],
            "target_fpr": self.target_fpr,
            "recall": self.recall,
            "fpr": self.fpr,
            "scaling": self.scaling,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict) -> UnknownRule:
        """Read :meth:`to_dict` output (raises :class:`ParameterError` when malformed)."""
        try:
            rule = cls(
                signal=str(data["signal"]),
                rates=tuple(float(r) for r in data["rates"]),
                regions=tuple(float(r) for r in data["regions"]),
                thresholds=tuple(tuple(float(v) for v in t) for t in data["thresholds"]),
                target_fpr=float(data["target_fpr"]),
                recall=float(data["recall"]),
                fpr=float(data["fpr"]),
                scaling={k: [float(v) for v in pair] for k, pair in data["scaling"].items()},
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"The reference's Unknown rule is malformed: {exc}") from exc
        if rule.signal not in SIGNALS or len(rule.thresholds) != len(rule.regions):
            raise ParameterError("The reference's Unknown rule is malformed.")
        return rule


@dataclass(frozen=True)
class ClassStats:
    """Class centres and pooled within-class precision (Cholesky factor) in a space."""

    means: np.ndarray
    factor: np.ndarray


def class_stats(space: np.ndarray, codes: np.ndarray, n_classes: int) -> ClassStats:
    """Class means and the Cholesky factor of the pooled within-class precision.

    Parameters
    ----------
    space
        ``(n_cells, dim)`` finite coordinates (the analysis space).
    codes
        Class code of every cell (0 .. n_classes - 1).
    n_classes
        Number of classes (a class without cells gets a NaN centre).

    Returns
    -------
    ClassStats
        Centres ``(n_classes, dim)`` and ``L`` with ``L @ L.T`` the precision.
    """
    x = np.asarray(space, dtype=np.float64)
    counts = np.bincount(codes, minlength=n_classes).astype(float)
    # per-class sums in cell order, as np.add.at (bit for bit), one dimension at a time
    sums = np.stack(
        [np.bincount(codes, weights=x[:, d], minlength=n_classes) for d in range(x.shape[1])],
        axis=1,
    ).reshape(n_classes, x.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    centred = x - means[codes]
    cov = centred.T @ centred / max(len(x) - n_classes, 1)
    cov += np.eye(len(cov)) * 1e-6 * max(np.trace(cov) / len(cov), 1e-12)
    precision = np.linalg.inv(cov)
    return ClassStats(means, np.linalg.cholesky((precision + precision.T) / 2))


def _mahalanobis(space: np.ndarray, stats: ClassStats, allowed: np.ndarray) -> np.ndarray:
    """Distance of each row to the nearest allowed class centre (rows x allowed mask)."""
    z = np.asarray(space, dtype=np.float64) @ stats.factor
    m = np.nan_to_num(stats.means) @ stats.factor
    d2 = (z**2).sum(1)[:, None] - 2 * z @ m.T + (m**2).sum(1)[None, :]
    d2 = np.where(allowed & np.isfinite(stats.means[:, 0])[None, :], d2, np.inf)
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def cell_signals(
    proba: np.ndarray,
    distance: np.ndarray,
    space: np.ndarray,
    stats: ClassStats,
    allowed: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Compute the raw candidate signals of each cell (higher: more unusual).

    Parameters
    ----------
    proba
        ``(n, n_classes)`` class probabilities (hidden classes already removed).
    distance
        Mean cosine distance to the nearest reference cells.
    space
        Analysis-space coordinates.
    stats
        :func:`class_stats` of the reference cells.
    allowed
        ``(n, n_classes)`` classes each row may be near (default: all).

    Returns
    -------
    dict
        ``uncertainty``, ``entropy``, ``distance``, ``mahalanobis`` arrays.
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    n_classes = p.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1) / np.log(max(n_classes, 2))
    if allowed is None:
        allowed = np.ones((len(p), len(stats.means)), dtype=bool)
    return {
        "uncertainty": 1.0 - p.max(axis=1),
        "entropy": entropy,
        "distance": np.asarray(distance, dtype=np.float64),
        "mahalanobis": _mahalanobis(space, stats, allowed),
    }


def with_combined(signals: dict[str, np.ndarray], scaling: dict) -> dict[str, np.ndarray]:
    """Add the ``combined`` signal: the sum of the robustly scaled signals.

    Parameters
    ----------
    signals
        One array per signal name.
    scaling
        ``{name: [centre, spread]}`` (:func:`robust_scaling`).

    Returns
    -------
    dict
        ``signals`` plus ``"combined"``.
    """
    parts = [(signals[name] - scaling[name][0]) / scaling[name][1] for name in _COMBINED]
    return {**signals, "combined": np.sum(parts, axis=0)}


def robust_scaling(signals: dict[str, np.ndarray]) -> dict:
    """Give each combined signal its median and interquartile range (1.0 when flat).

    Parameters
    ----------
    signals
        One array per signal name.

    Returns
    -------
    dict
        ``{name: [centre, spread]}``.
    """
    out = {}
    for name in _COMBINED:
        values = signals[name]
        centre = float(np.median(values))
        spread = float(np.subtract(*np.quantile(values, [0.75, 0.25])))
        out[name] = [centre, spread if spread > 1e-12 else 1.0]
    return out


def unknown_scores(
    reference: Reference,
    rule: UnknownRule,
    proba: np.ndarray,
    distance: np.ndarray,
    embedding: np.ndarray,
    stats: ClassStats,
) -> np.ndarray:
    """Score query cells with the rule (NaN for cells without an embedding).

    Parameters
    ----------
    reference
        The reference the cells were labelled from.
    rule
        Its :class:`UnknownRule`.
    proba
        ``(n, n_classes)`` class probabilities in the order of ``classes``.
    distance
        Mapping distance of each cell.
    embedding
        E-projection embeddings.
    stats
        :func:`class_stats` of the reference cells, classes in the order of ``proba``.

    Returns
    -------
    ndarray
        One score per cell; compare with :meth:`UnknownRule.threshold`.
    """
    ok = np.isfinite(np.asarray(embedding)).all(axis=1) & np.isfinite(proba).all(axis=1)
    out = np.full(len(ok), np.nan)
    if not ok.any():
        return out
    space = reference.analysis_space(np.asarray(embedding)[ok])
    signals = cell_signals(np.asarray(proba)[ok], np.asarray(distance)[ok], space, stats)
    out[ok] = with_combined(signals, rule.scaling)[rule.signal]
    return out


def describe_rule(rule: UnknownRule) -> str:
    """One plain sentence: what the rule looks at and what it measured."""
    names = {
        "uncertainty": "how unsure the classifier is (1 - top probability)",
        "entropy": "how spread the class probabilities are (entropy)",
        "distance": "how far the cell lies from its nearest reference cells",
        "mahalanobis": "how far the cell lies from the nearest cell-type centre",
        "combined": "a sum of uncertainty, distance to the nearest reference cells and "
        "distance to the nearest cell-type centre",
    }
    return (
        f"A cell is Unknown when {names[rule.signal]} is beyond what "
        f"{1 - rule.target_fpr:.0%} of the reference's own held-out cells show"
        + (" at the same coverage" if rule.coverage_aware else "")
        + f". Hiding each cell type in turn, it caught {rule.recall:.0%} of the hidden "
        f"type's cells (mean over types) and called {rule.fpr:.1%} of known cells Unknown."
    )
