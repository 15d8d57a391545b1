"""EV-projection without umap-learn (scembed_core.evmap) against umap-learn's own transform."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO
from sklearn.neighbors import NearestNeighbors

from scembed_core.evaluate import map_quality
from scembed_core.evmap import MapParams, find_ab_params, transform
from scembed_core.reference import DEMO_QUERY_PATH


@pytest.fixture(scope="module")
def planted_map():
    """A planted analysis space (8 types), its umap-learn map and a held-out query."""
    import umap

    from scembed_core.train import fit_reference_umap

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 20)) * 3
    ref_types = rng.integers(0, 8, 1500)
    query_types = rng.integers(0, 8, 400)
    ref = (centers[ref_types] + rng.normal(size=(1500, 20))).astype(np.float32)
    query = (centers[query_types] + rng.normal(size=(400, 20))).astype(np.float32)
    model = fit_reference_umap(ref, transformable=True)
    assert isinstance(model, umap.UMAP)
    distances, indices = (
        NearestNeighbors(metric="cosine", algorithm="brute").fit(ref).kneighbors(query, 15)
    )
    return {
        "ref": ref,
        "query": query,
        "ref_types": ref_types,
        "query_types": query_types,
        "model": model,
        "params": MapParams.from_umap(model),
        "indices": indices,
        "distances": distances.astype(np.float32),
    }


def ours(planted_map, **kwargs):
    return transform(
        planted_map["indices"],
        planted_map["distances"],
        planted_map["model"].embedding_,
        planted_map["params"],
        **kwargs,
    )


def quality(planted_map, coords):
    return map_quality(
        planted_map["query"],
        planted_map["ref"],
        coords,
        planted_map["model"].embedding_,
        planted_map["ref_types"],
        planted_map["query_types"],
    )


def test_as_good_as_umap_learn_and_far_above_random(planted_map):
    theirs = quality(planted_map, planted_map["model"].transform(planted_map["query"]))
    mine = quality(planted_map, ours(planted_map).coords)
    assert mine["preservation"] >= theirs["preservation"] - 0.01
    assert mine["vote_accuracy"] >= theirs["vote_accuracy"] - 0.005
    assert mine["vote_accuracy"] >= 0.95
    # a transform that ignored the reference neighbours: random places on the map
    rng = np.random.default_rng(1)
    emb = planted_map["model"].embedding_
    random = emb[rng.integers(0, len(emb), len(planted_map["query"]))]
    baseline = quality(planted_map, random)
    assert mine["preservation"] > max(10 * baseline["preservation"], baseline["preservation"] + 0.1)
    assert mine["vote_accuracy"] > baseline["vote_accuracy"] + 0.5


def test_umap_learns_own_steps_given_the_same_neighbours(planted_map):
    """umap-learn's own graph, init and SGD on our neighbour lists give our coordinates."""
    import scipy.sparse
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import (
        compute_membership_strengths,
        init_graph_transform,
        make_epochs_per_sample,
        smooth_knn_dist,
    )

    model, n = planted_map["model"], len(planted_map["query"])
    d, i = planted_map["distances"], planted_map["indices"].astype(np.int32)
    sigmas, rhos = smooth_knn_dist(d, 15.0, local_connectivity=0.0)
    rows, cols, vals, _ = compute_membership_strengths(i, d, sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(n, len(model.embedding_)))
    csr = graph.tocsr()
    csr.eliminate_zeros()
    start = init_graph_transform(csr, model.embedding_)
    graph.data[graph.data < graph.data.max() / 100.0] = 0.0
    graph.eliminate_zeros()
    state = np.random.RandomState(42).randint(-(2**31) + 1, 2**31 - 2, 3).astype(np.int64)
    expected = optimize_layout_euclidean(
        start.copy(),
        model.embedding_.astype(np.float32, copy=True),
        graph.row,
        graph.col,
        100,
        len(model.embedding_),
        make_epochs_per_sample(graph.data, 100),
        model._a,
        model._b,
        state,
        1.0,
        0.25,
        5.0,
        False,
    )
    got = ours(planted_map, per_cell=False)  # umap's batch-relative schedule
    np.testing.assert_array_equal(got.initial, start)  # so the random numbers are umap's too
    # the SGD runs in single precision (umap: double), so allow rounding-level drift
    deviation = np.linalg.norm(got.coords - expected, axis=1) / np.ptp(model.embedding_)
    assert np.median(deviation) < 1e-4 and np.quantile(deviation, 0.99) < 1e-2


def test_seeded_nan_rows_and_frames(planted_map):
    a, b = ours(planted_map, seed=7), ours(planted_map, seed=7)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert not np.array_equal(a.coords, ours(planted_map, seed=8).coords)
    indices = planted_map["indices"].copy()
    distances = planted_map["distances"].copy()
    indices[:5], distances[:5] = -1, np.nan
    result = transform(
        indices, distances, planted_map["model"].embedding_, planted_map["params"], n_frames=10
    )
    assert np.isnan(result.coords[:5]).all() and np.isfinite(result.coords[5:]).all()
    assert result.frames.shape == (11, len(planted_map["query"]) - 5, 2)
    np.testing.assert_array_equal(result.frames[0], result.initial[result.sample])
    np.testing.assert_array_equal(result.frames[-1], result.coords[result.sample])
    assert result.frame_epochs[0] == 0 and result.frame_epochs[-1] == 100
    moved = np.linalg.norm(result.frames[-1] - result.frames[0], axis=1)
    assert np.median(moved) > 0  # the cells do move from their start


def test_map_params_round_trip_and_validation(planted_map):
    params = planted_map["params"]
    assert MapParams.from_dict(params.to_dict()) == params
    import pickle

    assert pickle.loads(pickle.dumps(params)) == params  # shipped to Dask workers
    with pytest.raises(TypeError):
        params.fit["metric"] = "changed"  # shared between sessions: read-only
    a, b = find_ab_params(1.0, 0.1)
    assert abs(a - params.a) < 1e-6 and abs(b - params.b) < 1e-6
    from scembed_core.errors import ReferenceBundleError

    with pytest.raises(ReferenceBundleError, match="a and b"):
        MapParams.from_dict({"b": 1.0})
    with pytest.raises(ReferenceBundleError, match="unknown field"):
        MapParams.from_dict({**params.to_dict(), "__reduce__": 1})
    with pytest.raises(ReferenceBundleError, match="positive"):
        MapParams.from_dict({**params.to_dict(), "a": -1})
    assert params.transform_epochs(10_000) == 100 and params.transform_epochs(10_001) == 30


def test_project_cli_never_imports_umap(tmp_path):
    """`project` in a fresh interpreter: no umap-learn, no pynndescent on the query path."""
    script = textwrap.dedent(
        f"""
        import sys
        from scembed_core.cli import main
        code = main(["project", {str(DEMO_QUERY_PATH)!r}, "--reference", "default",
                     "--out", {str(tmp_path / "out.h5ad")!r}])
        print("EXIT", code)
        print("LOADED", sorted(m for m in ("umap", "pynndescent") if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "EXIT 0" in done.stdout, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout
    import anndata as ad

    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert np.isfinite(out.obsm["X_scembed_umap"]).all()
