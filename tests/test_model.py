"""Whitening (scembed_core.model): the analysis space every kNN, cluster and map step uses."""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core.model import Whitening
from scembed_core.reference import load_default_reference


@pytest.fixture(scope="module")
def reference_cells() -> np.ndarray:
    """The built-in reference's 8,785 cell embeddings (100-dimensional, mean-pooled)."""
    return np.asarray(load_default_reference().cells.obsm["X_scembed"])


def correlated(n: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """Cells with a few dominant, correlated directions, like mean-pooled word vectors."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.1, dim)
    mixing = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    return (rng.normal(size=(n, dim)) * scales) @ mixing.T + rng.normal(3.0, 1.0, dim)


def test_identity_covariance_on_the_reference_cells(reference_cells):
    whitening = Whitening.fit(reference_cells)
    white = whitening.transform(reference_cells)
    assert white.shape == (len(reference_cells), 20) and white.dtype == np.float32
    np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(20), atol=1e-4)
    # the plain embeddings are far from white: the test would see a no-op transform
    assert np.abs(np.cov(reference_cells[:, :20], rowvar=False) - np.eye(20)).max() > 0.5


def test_the_bundle_stores_the_whitening_of_its_own_cells(reference_cells):
    stored = load_default_reference().whitening
    fitted = Whitening.fit(reference_cells)
    np.testing.assert_allclose(stored.mean, fitted.mean, atol=1e-6)
    np.testing.assert_allclose(stored.matrix, fitted.matrix, atol=1e-6)


def test_the_kept_components_are_the_top_principal_axes():
    x = correlated(3000, 40)
    whitening = Whitening.fit(x, n_components=6)
    variances = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    # the whitening matrix undoes exactly the 6 largest variances
    kept = 1.0 / np.linalg.norm(whitening.matrix, axis=0) ** 2
    np.testing.assert_allclose(kept, variances[:6], rtol=1e-3)


@pytest.mark.parametrize(
    ("n_cells", "dim", "asked", "kept"),
    [
        (500, 100, 20, 20),  # as asked
        (500, 100, 40, 25),  # at most a quarter of the dimensions
        (500, 8, 20, 2),
        (500, 3, 20, 1),  # never fewer than one
        (4, 100, 20, 3),  # at most n_cells - 1 (the rank of the centred cells)
        (500, 100, 5, 5),
    ],
)
def test_the_component_cap(n_cells, dim, asked, kept):
    whitening = Whitening.fit(correlated(n_cells, dim, seed=dim), n_components=asked)
    assert whitening.matrix.shape == (dim, kept)
    assert whitening.mean.shape == (dim,)
    assert np.isfinite(whitening.matrix).all()


def test_a_direction_without_variance_is_not_blown_up():
    """Rank-one cells: the second kept axis has zero variance and is left unscaled."""
    rng = np.random.default_rng(1)
    x = np.outer(rng.normal(size=200), rng.normal(size=12)) + 5.0
    whitening = Whitening.fit(x, n_components=3)
    assert whitening.matrix.shape == (12, 3)
    assert np.isfinite(whitening.matrix).all()
    assert np.abs(whitening.transform(x)[:, 1:]).max() < 1e-3


def test_nan_rows_stay_nan_and_leave_the_others_alone(reference_cells):
    whitening = Whitening.fit(reference_cells)
    cells = reference_cells[:50].copy()
    cells[[3, 17]] = np.nan  # cells that could not be embedded
    white = whitening.transform(cells)
    assert np.isnan(white[[3, 17]]).all()
    finite = np.setdiff1d(np.arange(50), [3, 17])
    assert np.isfinite(white[finite]).all()
    np.testing.assert_array_equal(white[finite], whitening.transform(reference_cells[finite]))
