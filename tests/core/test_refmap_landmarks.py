"""Large references (issue 24): the landmark map, the reference index's size rule, and the
mapping distances from a neighbour table already searched."""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core import knn
from scembed_core.errors import ParameterError
from scembed_core.evmap import transform
from scembed_core.knn import build_cell_index, index_ef_construction, knn_query
from scembed_core.landmarks import REFINE_EPOCHS, choose_landmarks
from scembed_core.refmap import fit_reference_map


def _clusters(n: int, dim: int = 12, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 4, n)
    cells = np.eye(dim)[kinds] * 3.0 + rng.normal(scale=0.7, size=(n, dim))
    return cells.astype(np.float32), kinds


def _agreement(coords: np.ndarray, kinds: np.ndarray, rows: np.ndarray) -> float:
    """Share of each row's 10 nearest cells on the map of its own kind."""
    from sklearn.neighbors import NearestNeighbors

    _, near = NearestNeighbors(n_neighbors=11).fit(coords).kneighbors(coords[rows])
    return float((kinds[near[:, 1:]] == kinds[rows, None]).mean())


def test_a_landmark_map_places_the_other_cells_and_query_cells_among_their_kind():
    """Opt-in above a threshold (lowered here): the landmarks' map, the other cells placed
    on it, a layout of all cells, each step reported in order; the map's parameters place
    query cells against all cells' coordinates."""
    cells, kinds = _clusters(700)
    messages = []
    coords, params = fit_reference_map(
        cells, landmark_above=500, n_landmarks=250, progress=lambda f, m: messages.append(m)
    )
    assert params.fit["landmarks"] == 250
    assert coords.shape == (700, 2) and np.isfinite(coords).all()
    placed = np.setdiff1d(np.arange(700), choose_landmarks(700, 250, 42))
    assert len(placed) == 450 and _agreement(coords, kinds, placed) > 0.95
    steps = [
        "landmark map (250 of 700 cells): ",
        "index of landmarks: ",
        "placing cells: ",
        "all cells: ",
    ]
    firsts = [next(i for i, m in enumerate(messages) if m.startswith(s)) for s in steps]
    assert firsts == sorted(firsts)
    assert "placing cells: 450/450 on the landmark map" in messages
    assert messages[-1] == f"all cells: layout epoch {REFINE_EPOCHS}/{REFINE_EPOCHS}"
    # query cells (new points of each kind) land among their kind on the whole map
    queries, query_kinds = _clusters(60, seed=9)
    indices, distances = knn_query(build_cell_index(cells), queries, 15)
    where = transform(indices, distances, coords, params).coords
    from sklearn.neighbors import NearestNeighbors

    _, near = NearestNeighbors(n_neighbors=10).fit(coords).kneighbors(where)
    assert (kinds[near] == query_kinds[:, None]).mean() > 0.95


def test_at_or_below_the_threshold_and_by_default_the_map_is_of_all_cells():
    cells, _ = _clusters(300)
    coords, params = fit_reference_map(cells, n_epochs=20)
    same, same_params = fit_reference_map(cells, n_epochs=20, landmark_above=300, n_landmarks=100)
    np.testing.assert_array_equal(coords, same)
    assert "landmarks" not in params.fit and "landmarks" not in same_params.fit


def test_the_reference_index_is_built_with_ef_100_above_60000_cells(
    planted_reference, monkeypatch, tmp_path
):
    """One size rule, used by the build and by the loader's rebuild (the same graph)."""
    import dataclasses

    assert index_ef_construction(60_000) == 200 and index_ef_construction(60_001) == 100
    space = planted_reference.cell_space  # 240 cells
    assert build_cell_index(space).ef_construction == 200
    monkeypatch.setattr(knn, "LARGE_INDEX_ABOVE", 200)  # 240 cells count as large
    built = build_cell_index(space, ef_construction=index_ef_construction(len(space)))
    assert built.ef_construction == 100
    assert build_cell_index(space).ef_construction == 200, "a query's own graph keeps 200"
    # a reference without an index (a loaded bundle's) rebuilds it over its cells
    rebuilt = dataclasses.replace(planted_reference, index=None).index
    assert rebuilt is not planted_reference.index and rebuilt.ef_construction == 100
    built.save_index(str(tmp_path / "built.bin"))
    rebuilt.save_index(str(tmp_path / "rebuilt.bin"))
    assert (tmp_path / "built.bin").read_bytes() == (tmp_path / "rebuilt.bin").read_bytes()


def test_mapping_distances_from_a_table_equal_the_search(planted_reference):
    from scembed_core.knn import knn_query_all_threads
    from scembed_core.labels.vote import self_mapping_distances

    reference = planted_reference
    searched = self_mapping_distances(reference, 15)
    seen = []
    table = knn_query_all_threads(
        reference.index, reference.cell_space, 16, progress=lambda f, m: seen.append((f, m))
    )
    assert len(seen) == 10 and seen[-1] == (1.0, "16 nearest cells of 240/240 cells")
    np.testing.assert_array_equal(table[0], knn_query(reference.index, reference.cell_space, 16)[0])
    wider = knn_query(reference.index, reference.cell_space, 20)
    np.testing.assert_array_equal(self_mapping_distances(reference, 15, neighbors=table), searched)
    np.testing.assert_array_equal(self_mapping_distances(reference, 15, neighbors=wider), searched)
    assert reference.index.num_threads == 1, "the index's thread count is restored"
    # the build's figures are those of the search
    stored = reference.manifest["mapping_distance_q99"]
    assert stored == float(np.quantile(searched, 0.99))
    with pytest.raises(ParameterError, match="need"):
        self_mapping_distances(reference, 15, neighbors=(table[0][:, :8], table[1][:, :8]))
