"""E-projection on planted data: pooling, overlap through shifted peaks, coverage, thresholds."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import shifted_query

from scembed_core.cluster import (
    build_knn_graph,
    louvain,
    n_clusters_of,
)
from scembed_core.errors import ParameterError
from scembed_core.labels.assign import assign_labels
from scembed_core.labels.vote import UNASSIGNED
from scembed_core.pipeline import run_pipeline
from scembed_core.project import compute_coverage, pool_region_vectors, project


def test_pooling_equals_dense_mean():
    rng = np.random.default_rng(1)
    x = sp.random(50, 30, density=0.2, random_state=1, format="csr", dtype=np.float32)
    x.data[:] = 1
    vectors = rng.normal(size=(30, 4)).astype(np.float32)
    trained = rng.random(30) > 0.2
    got = pool_region_vectors(x, vectors, trained, chunk_size=7)
    dense = x.toarray().astype(bool) & trained
    for i in range(50):
        if dense[i].any():
            np.testing.assert_allclose(got[i], vectors[dense[i]].mean(axis=0), rtol=1e-5, atol=1e-6)
        else:
            assert np.isnan(got[i]).all()


def test_projection_through_shifted_peaks_labels_planted_types(planted, planted_reference):
    query = shifted_query(planted)
    result = project(query, planted_reference)
    assert result.coverage.fraction_peaks_mapped == 1.0
    assert result.umap.shape == (query.n_obs, 2) and np.isfinite(result.umap).all()
    labels = assign_labels(result.embedding, planted_reference, method="knn", k=10)
    accuracy = (labels["label"].to_numpy() == query.obs["cell_type"].to_numpy()).mean()
    assert accuracy >= 0.9
    assert labels["confidence"].between(0, 1).all()


def test_query_without_overlap_is_unassigned_not_a_crash(planted, planted_reference):
    query = planted[240:250].copy()
    query.var["start"] = query.var["start"] + 10_000_000
    query.var["end"] = query.var["end"] + 10_000_000
    coverage = compute_coverage(query, planted_reference)
    assert coverage.fraction_peaks_mapped == 0.0
    assert any("genome build" in w for w in coverage.warnings)
    result = run_pipeline(query, planted_reference)
    assert np.isnan(result.embedding).all()
    assert set(result.labels["label"]) == {UNASSIGNED}
    assert (result.clusters == -1).all()


def test_min_confidence_and_distance_thresholds(planted, planted_reference):
    result = project(shifted_query(planted), planted_reference)

    def knn(embedding, **thresholds):
        return assign_labels(embedding, planted_reference, method="knn", **thresholds)

    everything = knn(result.embedding, min_confidence=0.0)
    strict = knn(result.embedding, min_confidence=0.9)
    low = everything["confidence"].to_numpy() < 0.9
    assert ((strict["label"] == UNASSIGNED).to_numpy() == low).all()
    assert (everything["label"] != UNASSIGNED).all()
    none = knn(result.embedding, max_mapping_distance=-1.0)
    assert (none["label"] == UNASSIGNED).all()
    assert (none["predicted"] == everything["predicted"]).all()
    with pytest.raises(ParameterError, match="min_confidence"):
        knn(result.embedding, min_confidence=1.5)


def test_k_larger_than_reference_and_single_cell(planted, planted_reference):
    result = project(shifted_query(planted)[:1], planted_reference)
    labels = assign_labels(result.embedding, planted_reference, method="knn", k=10_000)
    assert len(labels) == 1 and labels["label"].iloc[0] != UNASSIGNED
    graph = build_knn_graph(result.embedding)
    assert n_clusters_of(louvain(graph, 1.0)) == 1


def test_pooling_refuses_mismatched_shapes():
    """The compiled kernel has no bounds checks: mismatched inputs must be refused first."""
    x = sp.csr_matrix(np.ones((2, 50), dtype=np.float32))
    vectors = np.ones((10, 4), dtype=np.float32)
    with pytest.raises(ParameterError, match="region"):
        pool_region_vectors(x, vectors, np.ones(10, dtype=bool))
    with pytest.raises(ParameterError, match="trained flags"):
        pool_region_vectors(x[:, :10], vectors, np.ones(9, dtype=bool))


def test_pooling_from_concurrent_threads_matches_serial():
    """App sessions run on threads: concurrent launches of the parallel kernel stay correct."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    x = sp.random(400, 300, density=0.05, random_state=3, format="csr", dtype=np.float32)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    trained = np.ones(300, dtype=bool)
    expected = pool_region_vectors(x, vectors, trained)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: pool_region_vectors(x, vectors, trained), range(16)))
    for got in results:
        np.testing.assert_array_equal(got, expected)
