"""The reference build's label stages, made fast without changing their answers.

On the built-in reference's real cells: the classifier's held-out neighbours come from the
reference's own index with the held-out cells hidden (never one of them, the index left as
it was); the final classifier fit starts from the held-out fit and reaches the same
optimum as a cold fit; the Unknown rule's one-pass top-k equals a full partition.
"""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core.errors import ParameterError
from scembed_core.knn import ExactCosineIndex, build_cell_index, knn_query, knn_query_hiding
from scembed_core.labels import loto, softmax_fit
from scembed_core.labels.classifier import DEFAULT_PARAMS, features_of
from scembed_core.labels.loto import _top_k, _top_k_partition
from scembed_core.labels.softmax_fit import (
    _warm_start,
    fit_softmax,
    held_out_neighbors,
    holdout_split,
    prefit,
)
from scembed_core.reference import load_default_reference


@pytest.fixture(scope="module")
def cells():
    """3,000 of the built-in reference's cells: embedding, analysis space, class codes."""
    reference = load_default_reference()
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(reference.cells.n_obs, 3000, replace=False))
    embedding = np.asarray(reference.cells.obsm["X_scembed"], dtype=np.float32)[rows]
    names = reference.cells.obs["cell_type"].astype(str).to_numpy()[rows]
    codes = np.unique(names, return_inverse=True)[1]
    return embedding, reference.whitening, reference.whitening.transform(embedding), codes


def _snapshot(index, space):
    return knn_query(index, space, 10)


def test_held_out_neighbours_come_from_the_shared_index_and_leave_it_unchanged(cells):
    _, _, space, codes = cells
    index = build_cell_index(space)
    before = _snapshot(index, space)
    fit_idx, held_idx = holdout_split(codes, 0.2, seed=0)
    found = held_out_neighbors(space, index, fit_idx, held_idx, 15, seed=0)
    assert found.shape == (len(held_idx), 15)
    assert not np.isin(found, held_idx).any() and (found >= 0).all()
    after = _snapshot(index, space)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    # a held-out cell is found again once unhidden: its own nearest cell is itself
    assert (knn_query(index, space[held_idx], 1)[0][:, 0] == held_idx).mean() > 0.99
    # a query that fails after the cells were hidden still unhides them all
    with pytest.raises(RuntimeError):
        knn_query_hiding(index, np.zeros((2, 3, space.shape[1])), 5, held_idx)
    np.testing.assert_array_equal(before[0], _snapshot(index, space)[0])
    with pytest.raises(ParameterError):
        knn_query_hiding(index, space[:3], len(space), held_idx)
    # the same neighbours as a second index over the fit cells (the old way) and as exact
    # search without hnswlib, but for the approximate search's rare misses
    second = held_out_neighbors(space, None, fit_idx, held_idx, 15, seed=0)
    exact = held_out_neighbors(space, ExactCosineIndex(space), fit_idx, held_idx, 15, seed=0)
    assert not np.isin(exact, held_idx).any()
    for other in (second, exact):
        same = np.mean([len(set(a) & set(b)) for a, b in zip(found, other, strict=True)]) / 15
        assert same > 0.99


def test_the_warm_started_fit_reaches_the_cold_fits_optimum(cells):
    embedding, whitening, _, codes = cells
    features = features_of(embedding[:1500], whitening, "both")
    codes = np.unique(codes[:1500], return_inverse=True)[1]
    n_classes = int(codes.max()) + 1
    fit_idx, _ = holdout_split(codes, 0.2, seed=0)
    part = fit_softmax(features[fit_idx], codes[fit_idx], n_classes, DEFAULT_PARAMS, 0)
    cold = fit_softmax(features, codes, n_classes, DEFAULT_PARAMS, 0)
    # the start point is the held-out fit's function re-expressed exactly
    coef, intercept = _warm_start(part, cold.mean, cold.scale)
    x = features.astype(np.float64)
    start = ((x - cold.mean) / cold.scale) @ coef.T + intercept
    logits = ((x - part.mean) / part.scale) @ part.raw_coef.T + part.raw_intercept
    np.testing.assert_allclose(
        start - start.mean(1, keepdims=True), logits - logits.mean(1, keepdims=True), atol=1e-9
    )
    warm = fit_softmax(features, codes, n_classes, DEFAULT_PARAMS, 0, warm=part)
    assert warm.n_iter < 0.8 * cold.n_iter
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-2)
    # convex: to a tight tolerance both starts reach the same optimum
    tight = {"tol": 1e-7}
    part = fit_softmax(features[fit_idx], codes[fit_idx], n_classes, DEFAULT_PARAMS, 0, **tight)
    cold = fit_softmax(features, codes, n_classes, DEFAULT_PARAMS, 0, **tight)
    warm = fit_softmax(features, codes, n_classes, DEFAULT_PARAMS, 0, warm=part, **tight)
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-3)
    np.testing.assert_allclose(warm.intercept, cold.intercept, atol=1e-3)


def test_the_warm_start_handles_two_classes(cells):
    embedding, whitening, _, codes = cells
    two = np.flatnonzero(codes < 2)
    features = features_of(embedding[two], whitening, "both")
    fit_idx, _ = holdout_split(codes[two], 0.2, seed=0)
    part = fit_softmax(features[fit_idx], codes[two][fit_idx], 2, DEFAULT_PARAMS, 0)
    assert part.raw_coef.shape[0] == 1
    cold = fit_softmax(features, codes[two], 2, DEFAULT_PARAMS, 0, tol=1e-6)
    warm = fit_softmax(features, codes[two], 2, DEFAULT_PARAMS, 0, warm=part, tol=1e-6)
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-3)
    np.testing.assert_allclose(warm.intercept, cold.intercept, atol=1e-3)


def test_one_pass_top_k_equals_a_full_partition(cells, monkeypatch):
    monkeypatch.setattr(loto, "SAMPLE_COLUMNS", 256)  # every 10th column bounds the k-th
    _, _, space, codes = cells
    unit = space / np.linalg.norm(space, axis=1, keepdims=True)
    by_class = 200 + np.argsort(codes[200:], kind="stable")  # columns: one block per class
    sims = unit[:200] @ unit[by_class].T
    col_codes = codes[by_class]
    hidden = codes[:200].copy()
    hidden[::4] = -1  # some rows hide nothing
    mask = col_codes[None, :] == hidden[:, None]
    references = (_top_k_partition(sims, 15), _top_k_partition(sims, 15, mask))
    both = _top_k(sims.copy(), 15, col_codes, hidden)
    for (cols, dist), reference in zip(both, references, strict=True):
        ref_cols, ref_dist = reference
        np.testing.assert_array_equal(np.sort(dist, axis=1), np.sort(ref_dist, axis=1))
        same = [set(a) == set(b) for a, b in zip(cols, ref_cols, strict=True)]
        assert np.mean(same) > 0.99  # up to ties at the k-th place
    assert not np.take_along_axis(mask, both[1][0], axis=1).any()
    assert np.take_along_axis(mask, both[0][0], axis=1).any()  # the hidden class is near
    # rows with fewer than k allowed columns in the sample fall back to the partition
    few = np.where(np.arange(len(col_codes)) < 20, 0, 1)  # 20 columns of class 0
    (_, _), (cols, _) = _top_k(sims, 15, few, np.ones(200, dtype=int))
    assert (cols < 20).all()


def test_a_large_fit_starts_from_a_subsample_fit(cells, monkeypatch):
    embedding, whitening, _, codes = cells
    features = features_of(embedding[:1500], whitening, "both")
    codes = np.unique(codes[:1500], return_inverse=True)[1]
    n_classes = int(codes.max()) + 1
    assert prefit(features, codes, n_classes, DEFAULT_PARAMS, 0) is None  # small: cold
    monkeypatch.setattr(softmax_fit, "PREFIT_MIN_CELLS", 1000)
    start = prefit(features, codes, n_classes, DEFAULT_PARAMS, 0)
    assert np.array_equal(start.present, np.unique(codes))  # every class in the quarter
    tight = {"tol": 1e-7}
    cold = fit_softmax(features, codes, n_classes, DEFAULT_PARAMS, 0, **tight)
    warm = fit_softmax(features, codes, n_classes, DEFAULT_PARAMS, 0, warm=start, **tight)
    np.testing.assert_allclose(warm.coef, cold.coef, atol=1e-3)
    np.testing.assert_allclose(warm.intercept, cold.intercept, atol=1e-3)
