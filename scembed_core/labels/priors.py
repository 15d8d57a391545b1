"""Class weighting and prior correction of the label classifier (rare types, issue 25).

A reference's class frequencies are one donor's: a model fitted on them carries that
donor's priors into every query. Two knobs move it toward rarer types:

- **partial class weighting**: each cell of class ``c`` weighs ``(n / (k n_c)) ** power``
  in the fit (``power`` 1 is scikit-learn's ``"balanced"``, 0 no weighting);
- **prior correction**: after the fit, ``strength * log(n_c / n)`` is subtracted from each
  class's intercept, which divides the softmax by the training prior to that power
  (1: a flat prior, the Bayes-optimal shift when the query's type proportions are unknown
  and taken as equal; 0: the reference's own proportions).

Both were measured by ``python -m benchmarks.label_weighting`` (a new-donor-like
validation, BENCHMARKS.md): neither beat the unweighted default beyond noise there, so both
are off by default. Set, they are stored in the model's parameters (``label_model.json``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_weights", "prior_shift"]


def class_weights(codes: np.ndarray, power: float) -> dict[int, float] | None:
    """Per-class sample weights ``(n / (k n_c)) ** power`` for the classes in ``codes``.

    Parameters
    ----------
    codes
        Integer class code of every training cell.
    power
        Exponent: 0 gives no weighting (None), 1 the fully balanced weights.

    Returns
    -------
    dict[int, float] | None
        ``{code: weight}`` for scikit-learn's ``class_weight``, or None when ``power`` is 0.
    """
    if power == 0:
        return None
    present, counts = np.unique(np.asarray(codes), return_counts=True)
    balanced = counts.sum() / (len(present) * counts)
    return {int(c): float(w) for c, w in zip(present, balanced**power, strict=True)}


def prior_shift(codes: np.ndarray, present: np.ndarray, strength: float) -> np.ndarray:
    """Intercept change ``-strength * log(prior)`` of each class in ``present``.

    Parameters
    ----------
    codes
        Integer class code of every training cell.
    present
        The class codes the fitted model has a row for, in its row order.
    strength
        0 (no change) to 1 (a flat prior).

    Returns
    -------
    np.ndarray
        ``(len(present),)`` values to add to the intercepts.
    """
    counts = np.bincount(np.asarray(codes), minlength=int(np.max(present)) + 1)[present]
    return -float(strength) * np.log(counts / counts.sum())
