"""The engine's own reference-map fit (scembed_core.refmap): umap-learn's recipe, no umap-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from sklearn.neighbors import NearestNeighbors

from scembed_core import refmap
from scembed_core.errors import Cancelled
from scembed_core.mapfit import exact_cosine_neighbors
from scembed_core.refmap import fit_reference_map, fuzzy_graph, hnsw_cosine_neighbors
from scembed_core.stopping import stop_when


def _groups(n_groups: int, per_group: int, dim: int = 16, spread: float = 0.15, seed: int = 0):
    """Cells around ``n_groups`` orthogonal directions (cosine clusters), and their group."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_groups] * 3.0
    labels = np.repeat(np.arange(n_groups), per_group)
    cells = centres[labels] + rng.normal(scale=spread, size=(len(labels), dim))
    return cells.astype(np.float32), labels


def _map_agreement(coords: np.ndarray, labels: np.ndarray, k: int = 15) -> float:
    """Share of each cell's ``k`` nearest cells on the map that share its label."""
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    return float((labels[idx[:, 1:]] == labels[:, None]).mean())


def test_a_seed_gives_one_map_and_the_parameters_the_bundle_stores():
    cells, _ = _groups(3, 60, spread=0.6)
    coords, params = fit_reference_map(cells, seed=7)
    again, _ = fit_reference_map(cells, seed=7)
    other, _ = fit_reference_map(cells, seed=8)
    assert coords.dtype == np.float32 and coords.shape == (180, 2)
    assert np.array_equal(coords, again)
    assert not np.allclose(coords, other)
    assert params.fit["engine"] == "scembed" and params.fit["random_state"] == 7
    assert (params.n_neighbors, params.metric, params.n_epochs) == (15, "cosine", None)
    assert params.a == pytest.approx(1.577, abs=1e-3) and params.b == pytest.approx(0.895, abs=1e-3)


def test_planted_clusters_are_separated_on_the_map():
    cells, labels = _groups(3, 80, spread=0.7)  # close enough to share one graph
    assert connected_components(fuzzy_graph(*exact_cosine_neighbors(cells, 15)))[0] == 1
    in_space = exact_cosine_neighbors(cells, 16)[0][:, 1:]
    space_agreement = float((labels[in_space] == labels[:, None]).mean())  # 0.989
    coords, _ = fit_reference_map(cells)
    assert np.isfinite(coords).all()
    assert _map_agreement(coords, labels) >= space_agreement - 0.01
    centres = np.stack([coords[labels == g].mean(axis=0) for g in range(3)])
    radius = max(np.linalg.norm(coords[labels == g] - centres[g], axis=1).mean() for g in range(3))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(3, 1)]
    assert gaps.min() > 4 * radius  # measured: 9.9


@pytest.mark.parametrize("n_groups", [2, 6])  # umap's two layouts of the components
def test_a_disconnected_knn_graph_gets_a_map_with_every_component_apart(n_groups):
    cells, labels = _groups(n_groups, 30, spread=0.05)
    graph = fuzzy_graph(*exact_cosine_neighbors(cells, 15))
    n_parts, parts = connected_components(graph)
    assert n_parts == n_groups  # no edge between groups: the multi-component start runs
    coords, _ = fit_reference_map(cells)
    assert np.isfinite(coords).all()
    assert _map_agreement(coords, labels) == 1.0


def test_stopping_between_layout_epochs_raises_cancelled():
    cells, _ = _groups(2, 40, spread=0.5)
    epochs = []

    def progress(fraction: float, message: str) -> None:
        if "layout epoch" in message:
            epochs.append(message)

    with stop_when(lambda: bool(epochs)), pytest.raises(Cancelled, match="map fit"):
        fit_reference_map(cells, progress=progress)
    assert epochs == ["layout epoch 1/500"]  # stopped at the next epoch, not at the end


def test_hnsw_neighbours_for_large_references_match_the_exact_search(monkeypatch):
    cells, labels = _groups(4, 100, spread=0.7, seed=1)
    exact_i, exact_d = exact_cosine_neighbors(cells, 15)
    found_i, found_d = hnsw_cosine_neighbors(cells, 15)
    assert (found_i[:, 0] == np.arange(len(cells))).all() and (found_d[:, 0] == 0).all()
    assert (np.diff(found_d, axis=1) >= -1e-6).all()
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(exact_i, found_i, strict=True)])
    assert recall > 0.95
    assert np.allclose(np.sort(found_d, axis=1)[:, :5], exact_d[:, :5], atol=1e-4)
    monkeypatch.setattr(refmap, "EXACT_MAX_CELLS", 100)  # this reference counts as large
    messages = []
    coords, _ = fit_reference_map(cells, progress=lambda f, m: messages.append(m))
    assert any("kNN index" in m for m in messages)
    assert _map_agreement(coords, labels) > 0.95


def test_the_built_in_reference_map_keeps_its_cell_types_together():
    """Real cells: the map's neighbours share a type about as often as the space's do."""
    from scembed_core.reference import load_default_reference

    reference = load_default_reference()
    rows = np.random.default_rng(0).choice(reference.n_cells, 1500, replace=False)
    space = np.asarray(reference.cell_space, dtype=np.float32)[rows]
    labels = reference.cells.obs["cell_type"].astype(str).to_numpy()[rows]
    coords, _ = fit_reference_map(space)
    in_space = exact_cosine_neighbors(space, 16)[0][:, 1:]
    space_agreement = float((labels[in_space] == labels[:, None]).mean())
    assert _map_agreement(coords, labels) > 0.9 * space_agreement


def test_the_large_graph_spectral_solve_finds_umaps_eigenvectors(monkeypatch):
    cells, _ = _groups(3, 100, spread=0.9, seed=2)
    graph = fuzzy_graph(*exact_cosine_neighbors(cells, 15))
    assert connected_components(graph)[0] == 1
    umaps = refmap.spectral_start(cells, graph, np.random.RandomState(0))
    monkeypatch.setattr(refmap, "LARGEST_ABOVE", 100)  # 300 cells count as large
    faster = refmap.spectral_start(cells, graph, np.random.RandomState(0))
    for axis in range(2):  # the same vectors, up to sign
        assert abs(np.corrcoef(umaps[:, axis], faster[:, axis])[0, 1]) > 0.999
