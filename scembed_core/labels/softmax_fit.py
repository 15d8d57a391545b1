"""How the label classifier is fitted: the softmax regression, the hold-out, its neighbours.

:func:`fit_softmax` fits the L2-regularised multinomial logistic regression (lbfgs, one
BLAS thread) on standardised features. :func:`~.classifier.fit_label_model` fits twice,
first on the non-held-out cells (for the calibration), then on all cells; the second fit
starts from the first one's optimum (``warm``), re-expressed in its own standardisation,
instead of from zero. The problem is strictly convex, so both start points reach the
same optimum (to the solver's tolerance), in far fewer iterations from the warm one.

:func:`holdout_split` draws the stratified hold-out and :func:`held_out_neighbors` finds
the held-out cells' nearest fit cells for the calibration's kNN vote: in the reference's
own index with the held-out cells hidden when it is given (no second index).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParameterError
from .priors import class_weights, prior_shift

if TYPE_CHECKING:
    from .classifier import LabelModelParams

__all__ = ["SoftmaxFit", "fit_softmax", "prefit", "holdout_split", "held_out_neighbors"]

ABSENT_INTERCEPT = -50.0  # a class missing from the fit: never chosen
PREFIT_MIN_CELLS = 20_000  # larger fits start from a fit on PREFIT_SHARE-th of their cells
PREFIT_SHARE = 4


@dataclass(frozen=True)
class SoftmaxFit:
    """A fitted softmax regression over ``n_classes`` (absent classes: never chosen).

    Attributes
    ----------
    mean, scale
        Feature standardisation: ``(x - mean) / scale``.
    coef, intercept
        ``(n_classes, n_features)`` and ``(n_classes,)`` softmax coefficients (prior
        correction applied).
    raw_coef, raw_intercept
        scikit-learn's ``coef_`` and ``intercept_`` (one row for two classes), what a
        warm start continues from.
    present
        Class codes present in the fit, in the order of the raw rows.
    n_iter
        lbfgs iterations.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    raw_coef: np.ndarray
    raw_intercept: np.ndarray
    present: np.ndarray
    n_iter: int

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, scale, coef, intercept)``, the :class:`~.classifier.LabelModel` arrays."""
        return self.mean, self.scale, self.coef, self.intercept


def _warm_start(
    warm: SoftmaxFit, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``warm``'s raw logits re-expressed on features standardised by ``(mean, scale)``.

    ``((x - m0) / s0) W0' + b0 = ((x - m1) / s1) (W0 s1 / s0)' + b0 + W0 ((m1 - m0) / s0)``:
    the same function of ``x``. Multinomial intercepts are centred (softmax ignores a
    common shift, and the gradient keeps their sum where it starts, zero for a cold fit).
    """
    coef = warm.raw_coef * (scale / warm.scale)[None, :]
    intercept = warm.raw_intercept + warm.raw_coef @ ((mean - warm.mean) / warm.scale)
    if len(intercept) > 1:
        intercept = intercept - intercept.mean()
    return coef, intercept


def fit_softmax(
    features: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    params: LabelModelParams,
    seed: int,
    warm: SoftmaxFit | None = None,
    tol: float = 1e-4,
) -> SoftmaxFit:
    """Fit the standardised softmax regression, from zero or from a previous fit.

    Parameters
    ----------
    features
        ``(n_cells, n_features)`` classifier features.
    codes
        Class code of each cell, in ``0..n_classes-1``.
    n_classes
        Classes of the model (those absent from ``codes`` are never chosen).
    params
        The classifier's hyper-parameters (``C``, weighting, ``max_iter``, prior).
    seed
        The solver's ``random_state``.
    warm
        A fit over the same classes to start from (its optimum re-expressed in this
        fit's standardisation); None, or other classes present: a cold start.
    tol
        lbfgs' tolerance on the largest gradient entry (scikit-learn's default).

    Returns
    -------
    SoftmaxFit
        The fitted arrays and the iterations taken.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    weights = class_weights(codes, params.weight_power * (params.class_weight is not None))
    model = LogisticRegression(
        C=params.C,
        class_weight=weights,
        max_iter=params.max_iter,
        random_state=seed,
        tol=tol,
        warm_start=warm is not None,
    )
    if warm is not None and np.array_equal(warm.present, np.unique(codes)):
        model.coef_, model.intercept_ = _warm_start(warm, mean, scale)
    with threadpool_limits(limits=1):  # threads only wait on each other at this size
        model.fit((x - mean) / scale, codes)
    present = model.classes_.astype(int)
    raw_coef = np.asarray(model.coef_, dtype=np.float64)
    raw_intercept = np.asarray(model.intercept_, dtype=np.float64)
    coef, intercept = raw_coef, raw_intercept
    if len(present) == 2:  # sklearn keeps one row for two classes: softmax([-z/2, z/2])
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    if params.prior_correction:
        intercept = intercept + prior_shift(codes, present, params.prior_correction)
    full_coef = np.zeros((n_classes, x.shape[1]))
    full_intercept = np.full(n_classes, ABSENT_INTERCEPT)
    full_coef[present] = coef
    full_intercept[present] = intercept
    n_iter = int(np.max(model.n_iter_))
    return SoftmaxFit(
        mean, scale, full_coef, full_intercept, raw_coef, raw_intercept, present, n_iter
    )


def prefit(
    features: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    params: LabelModelParams,
    seed: int,
) -> SoftmaxFit | None:
    """Fit a large fit's start point: the same objective on a quarter of its cells.

    scikit-learn's objective is ``C * sum(losses) + |w|^2 / 2``, so ``C`` is scaled by the
    cells left out: the subsample's optimum approximates the whole one's and the whole fit,
    started from it (``fit_softmax(warm=...)``), needs fewer of its costlier iterations.
    The optimum reached is the same (strictly convex); only the path differs.

    Parameters
    ----------
    features, codes, n_classes, params, seed
        As for :func:`fit_softmax`.

    Returns
    -------
    SoftmaxFit or None
        None below :data:`PREFIT_MIN_CELLS` cells (a cold start is as quick).
    """
    if len(codes) < PREFIT_MIN_CELLS:
        return None
    sub, _ = holdout_split(codes, 1.0 - 1.0 / PREFIT_SHARE, seed)  # every class kept
    scaled = dataclasses.replace(params, C=params.C * len(codes) / len(sub))
    return fit_softmax(features[sub], codes[sub], n_classes, scaled, seed)


def holdout_split(codes: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, held-out) indices; classes with one cell stay in the fit part.

    Parameters
    ----------
    codes
        Class code of each cell.
    fraction
        Share of each class held out (at least one cell, all but one at most).
    seed
        Seed of the draw.

    Returns
    -------
    tuple of numpy.ndarray
        Sorted fit and held-out cell indices.
    """
    rng = np.random.default_rng(seed)
    held = []
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        n_held = int(round(fraction * len(members)))
        if len(members) >= 2:
            held.append(rng.permutation(members)[: max(1, min(n_held, len(members) - 1))])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    fit_idx = np.setdiff1d(np.arange(len(codes)), held_idx)
    return fit_idx, held_idx


def held_out_neighbors(
    space: np.ndarray,
    index: Any,
    fit_idx: np.ndarray,
    held_idx: np.ndarray,
    k: int,
    seed: int,
) -> np.ndarray:
    """Find the held-out cells' ``k`` nearest fit cells (indices into all cells).

    Parameters
    ----------
    space
        ``(n_cells, dim)`` all cells in the analysis space (the index's space).
    index
        The reference's index over ``space`` in this order, searched with the held-out
        cells hidden (and left as it was); None: an index over the fit cells is built.
    fit_idx, held_idx
        The split (:func:`holdout_split`).
    k
        Neighbours per held-out cell (at most the fit cells).
    seed
        Seed of the fit cells' index when one is built.

    Returns
    -------
    numpy.ndarray
        ``(len(held_idx), k)`` cell indices (-1 where none was found).

    Raises
    ------
    ParameterError
        ``index`` does not hold one entry per row of ``space``.
    """
    from ..knn import build_cell_index, knn_query, knn_query_hiding

    k = int(min(k, len(fit_idx)))
    if index is not None:
        if index.get_current_count() != len(space):
            raise ParameterError(
                f"The kNN index holds {index.get_current_count():,} cells but "
                f"{len(space):,} embeddings were given."
            )
        return knn_query_hiding(index, space[held_idx], k, held_idx)[0]
    found, _ = knn_query(build_cell_index(space[fit_idx], seed=seed), space[held_idx], k)
    return np.where(found >= 0, fit_idx[np.clip(found, 0, None)], -1)
