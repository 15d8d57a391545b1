"""Rare types (issue 25): partial class weighting and the intercept prior correction."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_labels_classifier import gaussian_cells

from scembed_core.errors import ParameterError
from scembed_core.labels.classifier import (
    LabelModelParams,
    fit_label_model,
    load_label_model,
    save_label_model,
)
from scembed_core.labels.priors import class_weights, prior_shift


def imbalanced(seed: int = 0):
    """Four overlapping classes, the last one 15x rarer than the first."""
    x, y = gaussian_cells(300, 4, seed=seed)
    keep = np.ones(len(y), bool)
    rare = np.flatnonzero(y == "c3")
    keep[rare[20:]] = False
    return x[keep], y[keep]


def rare_recall(model, x, y) -> float:
    predicted = np.asarray(model.classes)[model.predict_proba(x).argmax(1)]
    return float((predicted[y == "c3"] == "c3").mean())


def test_weights_interpolate_between_none_and_balanced():
    codes = np.array([0] * 90 + [1] * 10)
    assert class_weights(codes, 0.0) is None
    full = class_weights(codes, 1.0)
    assert full == pytest.approx({0: 100 / (2 * 90), 1: 100 / (2 * 10)})
    half = class_weights(codes, 0.5)
    assert half == pytest.approx({k: v**0.5 for k, v in full.items()})


def test_rare_type_recall_grows_with_the_weight_power():
    x, y = imbalanced()
    test_x, test_y = gaussian_cells(200, 4, seed=5)
    recalls = [
        rare_recall(
            fit_label_model(
                x,
                y,
                params=LabelModelParams(C=1.0, class_weight="balanced", weight_power=p),
                calibrate=False,
            ),
            test_x,
            test_y,
        )
        for p in (0.0, 0.5, 1.0)
    ]
    assert recalls[0] < recalls[1] < recalls[2], recalls


def test_prior_correction_moves_only_the_intercepts_by_the_log_prior():
    x, y = imbalanced(1)
    base = fit_label_model(x, y, params=LabelModelParams(C=1.0), calibrate=False)
    params = LabelModelParams(C=1.0, prior_correction=0.5)
    shifted = fit_label_model(x, y, params=params, calibrate=False)
    np.testing.assert_array_equal(shifted.coef, base.coef)
    counts = np.unique(y, return_counts=True)[1]
    np.testing.assert_allclose(
        shifted.intercept - base.intercept, -0.5 * np.log(counts / counts.sum()), atol=1e-12
    )
    codes = np.unique(y, return_inverse=True)[1]
    np.testing.assert_allclose(
        prior_shift(codes, np.arange(4), 0.5), -0.5 * np.log(counts / counts.sum())
    )


def test_knobs_round_trip_and_old_entries_stay_equal(tmp_path):
    assert "weight_power" not in LabelModelParams().to_dict()  # old manifests compare equal
    x, y = imbalanced(2)
    params = LabelModelParams(
        C=1.0, class_weight="balanced", weight_power=0.5, prior_correction=0.25
    )
    model = fit_label_model(x, y, params=params, calibrate=False)
    names = save_label_model(model, tmp_path)
    assert json.loads((tmp_path / "label_model.json").read_text())["params"]["weight_power"] == 0.5
    loaded = load_label_model(tmp_path, dict.fromkeys(names, ""))
    assert loaded.params == model.params and model.params.prior_correction == 0.25
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    for bad in ({"weight_power": 1.5}, {"prior_correction": -0.1}):
        with pytest.raises(ParameterError):
            LabelModelParams(**bad)
