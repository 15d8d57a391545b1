"""The spectral layout (scembed_core.layout): the query's own structure without a UMAP fit."""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core.cluster import knn_matrices
from scembed_core.layout import graph_layout, spectral_layout
from scembed_core.reference import resolve_reference


@pytest.fixture(scope="module")
def real_cells():
    """2,000 real reference cells (Granja bone marrow) in the analysis space, with types."""
    reference = resolve_reference("default")
    rows = np.random.default_rng(0).choice(reference.n_cells, 2000, replace=False)
    labels = reference.cells.obs["cell_type"].astype(str).to_numpy()[rows]
    return reference.cell_space[rows], labels


def _knn_accuracy(coords: np.ndarray, labels: np.ndarray, k: int = 15) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote in ``coords``."""
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = labels[nearest]
    predicted = np.array([max(set(row), key=list(row).count) for row in votes])
    return float((predicted == labels).mean())


def test_the_layout_keeps_the_cell_types_apart_and_is_the_same_every_run(real_cells):
    space, labels = real_cells
    coords = spectral_layout(space)
    assert coords.shape == (len(space), 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all() and np.abs(coords).max() == pytest.approx(10.0)
    # cell types stay together in 2-D (16 types; the most common one is 20% of cells)
    assert _knn_accuracy(coords, labels) > 0.5
    _, connectivities = knn_matrices(space, 15, seed=0)
    again = graph_layout(connectivities, np.ones(len(space), dtype=bool))
    assert np.array_equal(coords, again)


def test_cells_without_an_embedding_stay_nan(real_cells):
    space = real_cells[0][:300].copy()
    space[[3, 7]] = np.nan
    coords = spectral_layout(space)
    assert np.isnan(coords[[3, 7]]).all() and np.isfinite(np.delete(coords, [3, 7], 0)).all()
    assert np.isnan(spectral_layout(space[:2])).all()  # fewer than 3 cells: nothing to lay out
