"""Safety on a shared server (issue 11): content-keyed references, trust per file, immutable
shared objects, options that are honoured (max pooling, seeds), and small correctness points.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from scembed_core import regions as regions_module
from scembed_core.errors import ParameterError
from scembed_core.formats.geniml import read_geniml_model
from scembed_core.knn import build_cell_index, drop_self_neighbors
from scembed_core.labels.assign import assign_labels
from scembed_core.labels.vote import (
    mapping_distance_threshold,
    self_mapping_distances,
)
from scembed_core.pipeline import run_pipeline, write_results
from scembed_core.project import pool_region_vectors, project
from scembed_core.reference import load_reference, save_reference
from scembed_core.regions import GenomicRegions, map_peaks_to_universe
from scembed_core.train import TrainingParams, build_reference, train_reference

GENIML_TINY = Path(__file__).parents[1] / "data" / "geniml_tiny"


def _query(planted):
    return planted[240:].copy()


# --- 1. cache keys cover the content ---------------------------------------------------------
def test_fingerprint_covers_labels_not_just_region_vectors(planted, planted_reference):
    """Two references on the same region vectors but different labels never share a key."""
    cells = planted[:240].copy()
    renamed = cells.copy()
    renamed.obs["cell_type"] = "other-" + renamed.obs["cell_type"].astype(str)
    model = planted_reference.model
    a = build_reference(model, cells, label_key="cell_type", name="my-reference")
    b = build_reference(model, renamed, label_key="cell_type", name="my-reference")
    again = build_reference(model, cells, label_key="cell_type", name="my-reference")
    np.testing.assert_array_equal(a.model.vectors, b.model.vectors)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == again.fingerprint, "same content, same key (cache hits stay)"


def test_saved_fingerprint_uses_the_bundles_file_hashes(tmp_path, planted, planted_reference):
    saved = save_reference(planted_reference, tmp_path / "a")
    assert saved.manifest["files"] and saved.path == tmp_path / "a"
    assert planted_reference.path is None, "save_reference leaves its input unchanged"
    assert "files" not in planted_reference.manifest
    loaded = load_reference(saved.path)
    assert loaded.fingerprint == saved.fingerprint
    relabelled = dataclasses.replace(
        saved, manifest={**saved.manifest, "files": {**saved.manifest["files"], "x": "y"}}
    )
    assert relabelled.fingerprint != saved.fingerprint


# --- 2. trust per file: a trusted pickle never authorises parsing the index -------------------
def test_a_crafted_index_is_rebuilt_even_with_trust(tmp_path, planted_reference):
    """A bundle's binary kNN index is never parsed (only the built-in one is), even when
    the caller trusts the source; before, trusting a bundle's benign pickle got its index
    parsed with hnswlib's unchecked loader."""
    folder = save_reference(planted_reference, tmp_path / "ref").path
    manifest = json.loads((folder / "manifest.json").read_text())
    # A crafted index: a valid hnswlib file whose ids point at the wrong cells.
    space = planted_reference.cell_space
    permutation = np.random.default_rng(0).permutation(len(space))
    crafted = build_cell_index(space[permutation])
    crafted.save_index(str(folder / "knn_index.bin"))
    manifest["files"]["knn_index.bin"] = _sha256(folder / "knn_index.bin")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for trust in (False, True):
        loaded = load_reference(folder, trust=trust)
        found, _ = loaded.index.knn_query(space[:50], k=1)
        np.testing.assert_array_equal(found[:, 0], np.arange(50))  # rebuilt, not crafted


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 6. shared objects are immutable and safe from many threads -----------------------------
def test_reference_is_frozen_and_indexed_when_built(planted_reference):
    assert planted_reference.index is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        planted_reference.index = None  # type: ignore[misc]
    bare = dataclasses.replace(planted_reference, index=None)
    assert bare.index is not None, "an index is built when the object is made, not on use"


def test_eight_threads_projecting_at_once_match_a_serial_run(planted, planted_reference):
    query = _query(planted)

    def run(_):
        result = project(query, planted_reference)
        labels = assign_labels(result.embedding, planted_reference, method="knn")
        return result, labels

    expected, expected_labels = run(None)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(run, range(8)))
    for result, labels in outcomes:
        np.testing.assert_array_equal(result.embedding, expected.embedding)
        np.testing.assert_array_equal(result.neighbors[0], expected.neighbors[0])
        np.testing.assert_allclose(result.umap, expected.umap, atol=1e-5)
        assert (labels["label"] == expected_labels["label"]).all()


# --- 5. options that are validated are honoured ----------------------------------------------
def test_max_pooling_equals_a_plain_numpy_max():
    rng = np.random.default_rng(5)
    x = sp.random(300, 120, density=0.05, random_state=5, format="csr", dtype=np.float32)
    x.data[:] = 1.0
    vectors = rng.normal(size=(120, 6)).astype(np.float32)
    trained = rng.random(120) > 0.2
    got = pool_region_vectors(x, vectors, trained, pooling="max")
    dense = x.toarray().astype(bool) & trained
    for i in range(x.shape[0]):
        if dense[i].any():
            np.testing.assert_array_equal(got[i], vectors[dense[i]].max(axis=0))
        else:
            assert np.isnan(got[i]).all()
    mean = pool_region_vectors(x, vectors, trained)
    assert not np.allclose(np.nan_to_num(mean), np.nan_to_num(got))
    with pytest.raises(ParameterError, match="pooling"):
        pool_region_vectors(x, vectors, trained, pooling="median")


def test_geniml_max_pooling_model_projects_with_max(tmp_path, granja):
    folder = tmp_path / "model"
    shutil.copytree(GENIML_TINY, folder)
    config = (folder / "config.yaml").read_text()
    lines = [line for line in config.splitlines() if not line.startswith("pooling_method")]
    (folder / "config.yaml").write_text("\n".join([*lines, "pooling_method: max"]) + "\n")
    from scembed_core.reference import resolve_reference

    reference = resolve_reference(folder)
    assert reference.model.pooling == "max"
    cells = granja[:300]
    result = project(cells, reference)
    regions = result.coverage.cell_regions.toarray().astype(bool) & reference.model.trained
    rows = np.flatnonzero(regions.any(axis=1))[:40]
    assert len(rows) > 5
    for i in rows:
        np.testing.assert_allclose(
            result.embedding[i], reference.model.vectors[regions[i]].max(axis=0), rtol=1e-6
        )
    # and a full reference built on it keeps max pooling through save and load
    assert read_geniml_model(folder).pooling == "max"


def test_full_reference_keeps_its_pooling_through_a_bundle(tmp_path, planted, planted_reference):
    model = dataclasses.replace(
        planted_reference.model, metadata={**planted_reference.model.metadata, "pooling": "max"}
    )
    built = build_reference(model, planted[:240], label_key="cell_type")
    saved = save_reference(built, tmp_path / "max")
    loaded = load_reference(saved.path)
    assert loaded.model.pooling == "max"
    query = _query(planted)
    np.testing.assert_array_equal(project(query, loaded).embedding, project(query, built).embedding)


def test_one_worker_with_a_seed_trains_the_same_vectors_twice(planted):
    params = TrainingParams(epochs=3, window=10, vector_size=8, min_count=2, workers=1, seed=7)
    a = train_reference(planted[:120].copy(), label_key="cell_type", params=params, fit_umap=False)
    b = train_reference(planted[:120].copy(), label_key="cell_type", params=params, fit_umap=False)
    np.testing.assert_array_equal(a.model.vectors, b.model.vectors)


# --- 7. smaller correctness points ----------------------------------------------------------
def test_mapping_distance_threshold_is_taken_at_the_querys_k(planted, planted_reference):
    stored = planted_reference.manifest
    assert stored["mapping_distance_k"] == 15
    assert mapping_distance_threshold(planted_reference, 15) == stored["mapping_distance_q99"]
    at_50 = mapping_distance_threshold(planted_reference, 50)
    expected = float(np.quantile(self_mapping_distances(planted_reference, 50), 0.99))
    assert at_50 == pytest.approx(expected)
    assert at_50 > stored["mapping_distance_q99"], "more neighbours, larger mean distance"
    query = _query(planted)
    flagged_15 = project(query, planted_reference, ev=False).mapping_outlier.mean()
    flagged_50 = project(query, planted_reference, ev=False, k_neighbors=50).mapping_outlier.mean()
    assert flagged_50 <= flagged_15 + 0.1, (flagged_15, flagged_50)


def test_self_neighbours_are_dropped_wherever_ties_put_them():
    # point 0's self entry comes second (a tie with point 3), point 1's never comes back
    indices = np.array([[3, 0, 4], [2, 5, 6], [2, 7, 8]])
    distances = np.array([[0.0, 0.0, 0.1], [0.0, 0.2, 0.3], [0.0, 0.1, 0.2]])
    kept, dist = drop_self_neighbors(indices, distances)
    np.testing.assert_array_equal(kept, [[3, 4], [2, 5], [7, 8]])
    np.testing.assert_array_equal(dist, [[0.0, 0.1], [0.0, 0.2], [0.1, 0.2]])


def test_knn_graph_of_duplicate_embeddings_never_links_a_cell_to_itself():
    from scembed_core.cluster import _knn  # the rule under test; no public face of its own

    embedding = np.repeat(np.eye(3, dtype=np.float32) + 0.1, 12, axis=0)
    indices, _ = _knn(embedding, 5, seed=0)
    assert (indices != np.arange(len(embedding))[:, None]).all()
    assert all(len(set(row)) == 5 for row in indices)
    group = np.arange(len(embedding)) // 12
    assert (group[indices] == group[:, None]).all()


def test_a_chromosome_long_region_does_not_make_overlap_quadratic():
    n = 200_000
    starts = np.arange(n, dtype=np.int64) * 1_000
    universe = GenomicRegions(
        np.array(["chr1"] * (n + 1)),
        np.concatenate([[0], starts]),
        np.concatenate([[250_000_000], starts + 500]),
    )
    peaks = GenomicRegions(np.array(["chr1"] * n), starts + 100, starts + 200)
    mapping = map_peaks_to_universe(peaks, universe)
    matrix = mapping.matrix.tocsr()
    assert matrix.nnz == 2 * n  # its own small region and the long one, nothing else
    assert (matrix[:, 0].toarray().ravel() == 1).all()
    np.testing.assert_array_equal(matrix[:, 1:].tocoo().col, np.arange(n))


def test_overlap_in_bounded_blocks_equals_one_block(monkeypatch):
    rng = np.random.default_rng(2)
    u_start = np.sort(rng.integers(0, 100_000, 3_000))
    universe = GenomicRegions(
        np.array(["chr1"] * 3_000), u_start, u_start + rng.integers(1, 3_000, 3_000)
    )
    q_start = rng.integers(0, 100_000, 2_000)
    peaks = GenomicRegions(np.array(["chr1"] * 2_000), q_start, q_start + 400)
    whole = map_peaks_to_universe(peaks, universe).matrix.toarray()
    monkeypatch.setattr(regions_module, "MAX_CANDIDATE_PAIRS", 97)
    blocked = map_peaks_to_universe(peaks, universe).matrix.toarray()
    np.testing.assert_array_equal(whole, blocked)
    brute = (universe.start[None, :] < peaks.end[:, None]) & (
        universe.end[None, :] > peaks.start[:, None]
    )
    np.testing.assert_array_equal(whole.astype(bool), brute)


def test_written_uns_keeps_none_and_numbers(tmp_path, planted, planted_reference):
    import anndata as ad

    result = run_pipeline(_query(planted), planted_reference, n_clusters=4)
    result.params["a_list"] = [1, 2, 3]
    path = write_results(result, tmp_path / "out.h5ad")[0]
    params = ad.read_h5ad(path).uns["scembed"]["params"]
    assert "max_mapping_distance" in params and params["max_mapping_distance"] is None
    assert np.issubdtype(np.asarray(params["a_list"]).dtype, np.integer)
    np.testing.assert_array_equal(params["a_list"], [1, 2, 3])


def test_app_refuses_every_pickle_suffix_the_engine_does():
    from scembed_app.uploads import load_uploads
    from scembed_core.errors import UnsafeInputError
    from scembed_core.io import PICKLE_SUFFIXES

    for suffix in PICKLE_SUFFIXES:
        with pytest.raises(UnsafeInputError, match="arbitrary code"):
            load_uploads([(f"cells{suffix}", b"\x80\x04K\x01.")])


def test_absent_type_flag_compares_distances_at_the_same_k(planted, planted_reference):
    """Every query type is in the reference: at k = 50 no cluster may be flagged absent."""
    result = run_pipeline(_query(planted), planted_reference, n_clusters=4, k_neighbors=50)
    table = result.cluster_table
    assert len(table) == 4 and not table["possibly_absent"].any(), table
    at_15 = float(planted_reference.manifest["mapping_distance_q99"])
    assert (table["median_mapping_distance"] > at_15).any(), "the k = 15 threshold would flag"
