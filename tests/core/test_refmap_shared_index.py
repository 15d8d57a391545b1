"""One kNN index per build: the map's neighbours above EXACT_MAX_CELLS come from the
reference's own index (knn.build_cell_index), and the layout-epoch rule by size."""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core import refmap
from scembed_core.errors import ParameterError
from scembed_core.knn import HNSW_EF_CONSTRUCTION, HNSW_EF_QUERY, build_cell_index, knn_query
from scembed_core.refmap import fit_reference_map, hnsw_cosine_neighbors, layout_epochs


def _cells(n: int = 400, dim: int = 12, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[rng.integers(0, 4, n)] * 3.0
    return (centres + rng.normal(scale=0.7, size=(n, dim))).astype(np.float32)


def test_the_index_built_in_chunks_is_the_one_built_in_one_call(tmp_path):
    """Chunked insertion (for progress) on one thread gives the same graph, byte for byte."""
    import hnswlib

    cells = _cells()
    seen = []
    chunked = build_cell_index(cells, progress=lambda f, m: seen.append((f, m)))
    whole = hnswlib.Index(space="cosine", dim=cells.shape[1])
    whole.init_index(
        max_elements=len(cells), ef_construction=HNSW_EF_CONSTRUCTION, M=16, random_seed=0
    )
    whole.set_ef(HNSW_EF_QUERY)
    whole.set_num_threads(1)
    whole.add_items(cells, np.arange(len(cells)))
    chunked.save_index(str(tmp_path / "chunked.bin"))
    whole.save_index(str(tmp_path / "whole.bin"))
    assert (tmp_path / "chunked.bin").read_bytes() == (tmp_path / "whole.bin").read_bytes()
    assert len(seen) == 10 and seen[-1] == (1.0, "400/400 cells inserted")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_the_map_searches_the_references_index_when_given_one():
    cells = _cells()
    index = build_cell_index(cells)
    messages = []
    found_i, found_d = hnsw_cosine_neighbors(
        cells, 15, index=index, progress=lambda f, m: messages.append(m)
    )
    assert not any("kNN index" in m for m in messages), "no second index"
    assert "nearest cells of 400/400 cells" in messages[-1]
    # the label transfer's search on the same index finds the same neighbours
    theirs_i, theirs_d = knn_query(index, cells, 15)
    assert (found_i[:, 0] == np.arange(len(cells))).all() and (found_d[:, 0] == 0).all()
    same = [set(a) == set(b) for a, b in zip(found_i, theirs_i, strict=True)]
    assert np.mean(same) > 0.99
    # the shared index is left as it was: query ef and one thread
    assert index.ef == HNSW_EF_QUERY and index.num_threads == 1
    with pytest.raises(ParameterError, match="holds 400 cells, not 300"):
        hnsw_cosine_neighbors(cells[:300], 15, index=index)


def test_a_large_build_builds_one_index_and_the_map_uses_it(planted, monkeypatch):
    """build_reference above EXACT_MAX_CELLS (lowered here): the index stage, then the map
    searching it (no map-only index); the reference keeps the index it was built with."""
    from scembed_core.train import TrainingParams, train_reference

    params = TrainingParams(epochs=2, window=20, vector_size=16, min_count=2, workers=1)
    monkeypatch.setattr(refmap, "EXACT_MAX_CELLS", 100)  # 240 cells count as large
    messages = []
    reference = train_reference(
        planted[:240].copy(),
        label_key="cell_type",
        params=params,
        genome="test",
        progress=lambda f, m: messages.append(m),
    )
    in_index = [m for m in messages if m.startswith("Building the kNN index")]
    in_map = [m for m in messages if m.startswith("Fitting the reference map")]
    assert any("240/240 cells inserted" in m for m in in_index)
    assert messages.index(in_index[-1]) < messages.index(in_map[0]), "index before the map"
    assert not any("kNN index" in m for m in in_map)
    assert any("nearest neighbours of 240/240 cells" in m for m in in_map)
    assert reference.index.get_current_count() == reference.n_cells
    assert np.isfinite(reference.cells.obsm["X_umap"]).all()


def test_layout_epochs_by_size():
    assert layout_epochs(8_785) == 500 and layout_epochs(10_000) == 500
    assert layout_epochs(10_001) == 200
    cells = _cells(120)
    messages = []
    fit_reference_map(cells, n_epochs=7, progress=lambda f, m: messages.append(m))
    assert messages[-1] == "layout epoch 7/7"


def test_a_build_stops_while_its_index_is_inserted(planted):
    from scembed_core.errors import Cancelled
    from scembed_core.stopping import stop_when
    from scembed_core.train import TrainingParams, train_reference

    params = TrainingParams(epochs=2, window=20, vector_size=16, min_count=2, workers=1)
    messages = []
    inserted = lambda: any("cells inserted" in m for m in messages)  # noqa: E731
    with stop_when(inserted), pytest.raises(Cancelled, match="Building the kNN index"):
        train_reference(
            planted[:240].copy(),
            label_key="cell_type",
            params=params,
            genome="test",
            progress=lambda f, m: messages.append(m),
        )
    assert not any(m.startswith("Fitting the reference map") for m in messages)


def test_fewer_than_one_layout_epoch_is_refused():
    space = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    with pytest.raises(ParameterError, match="n_epochs"):
        fit_reference_map(space, n_epochs=0)
