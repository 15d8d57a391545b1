"""The AnnData-first face (``import scembed_core as se``) gives the command line's results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import scembed_core as se
from scembed_core import results
from scembed_core.errors import ParameterError
from scembed_core.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_verbs_record_their_parameters_under_their_keys(tmp_path, planted, planted_reference):
    adata = planted[240:].copy()
    se.tl.project(adata, planted_reference)
    se.tl.neighbors(adata)
    se.tl.cluster(adata, resolution=1.0)
    se.tl.transfer_labels(adata, planted_reference)
    se.tl.annotate_clusters(adata, planted_reference)

    truth = adata.obs["cell_type"].astype(str).to_numpy()
    assert (adata.obs["scembed_label"].astype(str).to_numpy() == truth).mean() >= 0.9
    probabilities = adata.obsm["scembed_label_probabilities"]
    assert probabilities.shape == (adata.n_obs, len(adata.uns["scembed"]["label_classes"]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(adata.obs["scembed_cluster_label"].astype(str)) <= set(truth) | {"Unassigned"}
    uns = adata.uns["scembed"]
    assert uns["scembed_cluster"]["params"]["resolution"] == 1.0
    assert uns["project"]["params"]["reference_fingerprint"] == planted_reference.fingerprint
    assert uns["scembed_label"]["params"]["method"] in {"classifier", "knn"}
    assert uns["params"]["resolution"] == 1.0 and uns["params"]["seed"] == 0
    # the projection recorded the reference's own 99th percentile; the annotation used it
    threshold = uns["project"]["params"]["mapping_distance_threshold"]
    assert threshold == planted_reference.manifest["mapping_distance_q99"]
    table = uns["scembed_cluster_label"]["cluster_table"]
    expected = table["median_mapping_distance"].to_numpy() > threshold
    assert table["possibly_absent"].tolist() == expected.tolist()

    path = se.write(adata, tmp_path / "out.h5ad")
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obs["scembed_label"], adata.obs["scembed_label"])
    assert back.uns["scembed"]["scembed_label"]["params"]["max_mapping_distance"] is None
    assert back.uns["neighbors"]["params"]["n_neighbors"] == 15


def test_neighbors_are_stored_as_scanpy_stores_them_and_cluster_reads_them(
    planted, planted_reference
):
    from scembed_core.cluster import build_knn_graph, louvain

    adata = se.tl.project(planted[240:].copy(), planted_reference, copy=True)
    se.tl.neighbors(adata, n_neighbors=10)
    entry = adata.uns["neighbors"]
    assert entry["connectivities_key"] == "connectivities"
    assert entry["params"] == {
        "n_neighbors": 10,
        "method": "scembed",
        "metric": "cosine",
        "use_rep": "X_scembed_whitened",
        "random_state": 0,
    }
    distances = adata.obsp["distances"]
    assert (distances.getnnz(axis=1) == 10).all()
    connectivities = adata.obsp["connectivities"]
    assert (connectivities != connectivities.T).nnz == 0, "symmetric"
    se.tl.cluster(adata, resolution=1.0)
    expected = louvain(build_knn_graph(adata.obsm["X_scembed_whitened"], 10), 1.0, seed=0)
    np.testing.assert_array_equal(results.cluster_codes(adata), expected)
    assert adata.uns["scembed"]["scembed_cluster"]["params"]["n_neighbors"] == 10
    # the stored graph is what is clustered: a graph that joins everything gives one cluster
    joined = adata.copy()
    n = joined.n_obs
    joined.obsp["connectivities"] = sp.csr_matrix(np.ones((n, n)) - np.eye(n))
    se.tl.cluster(joined, resolution=0.1)
    assert set(joined.obs["scembed_cluster"].astype(str)) == {"0"}
    with pytest.raises(ParameterError, match="tl.neighbors"):
        se.tl.cluster(adata, n_neighbors=20)
    # without a stored graph cluster computes one (and stores it)
    fresh = se.tl.project(planted[240:].copy(), planted_reference, copy=True)
    se.tl.cluster(fresh, n_neighbors=10, resolution=1.0)
    np.testing.assert_array_equal(results.cluster_codes(fresh), expected)
    assert "connectivities" in fresh.obsp


def test_two_clusterings_with_other_keys_keep_both_records(planted, planted_reference):
    adata = se.tl.project(planted[240:].copy(), planted_reference, copy=True)
    se.tl.neighbors(adata)
    se.tl.cluster(adata, resolution=0.2, key_added="coarse")
    se.tl.cluster(adata, n_clusters=4, key_added="four")
    uns = adata.uns["scembed"]
    assert uns["coarse"]["params"]["resolution"] == 0.2
    assert uns["four"]["params"]["n_clusters_requested"] == 4
    assert "resolution_curve" in uns["four"] and "resolution_curve" not in uns["coarse"]
    assert adata.obs["four"].nunique() == 4
    assert uns["params"]["resolution"] is None, "the run summary follows the default key only"
    se.tl.transfer_labels(adata, planted_reference, key_added="guess", min_confidence=0.9)
    se.tl.annotate_clusters(adata, planted_reference, cluster_key="four", label_key="guess")
    assert {"guess", "guess_mapping_distance", "four_label", "four_possibly_absent"} <= set(
        adata.obs.columns
    )
    assert "scembed_label" not in adata.obs and "scembed_cluster_label" not in adata.obs
    assert "guess_probabilities" in adata.obsm
    table = uns["four_label"]["cluster_table"]
    assert table["n_cells"].sum() == adata.n_obs
    frame = results.labels_frame(adata, "guess")
    assert (frame["label"] == adata.obs["guess"].astype(str)).all()
    assert len(uns["guess"]["classes"]) == frame.shape[1] - 5


def test_old_keyword_names_still_work_with_a_deprecation_warning(planted, planted_reference):
    from scembed_core.errors import ScEmbedDeprecationWarning

    query = planted[240:].copy()
    with pytest.warns(ScEmbedDeprecationWarning, match="use n_neighbors="):
        old = se.tl.project(query, planted_reference, k_neighbors=10, copy=True)
    new = se.tl.project(query, planted_reference, n_neighbors=10, copy=True)
    assert old.obsm["scembed_neighbors"].shape[1] == 10
    np.testing.assert_array_equal(old.obsm["scembed_neighbors"], new.obsm["scembed_neighbors"])
    with pytest.warns(ScEmbedDeprecationWarning, match="k= is deprecated; use n_neighbors="):
        se.tl.transfer_labels(new, planted_reference, k=5)
    assert new.uns["scembed"]["scembed_label"]["params"]["n_neighbors"] == 5
    with pytest.raises(ParameterError, match="pass only n_neighbors="):
        se.tl.transfer_labels(new, planted_reference, k=5, n_neighbors=7)
    with pytest.warns(ScEmbedDeprecationWarning, match="use random_state="):
        result = run_pipeline(query, planted_reference, ev=False, seed=3)
    assert result.params["seed"] == 3
    assert issubclass(ScEmbedDeprecationWarning, FutureWarning)


def test_copy_leaves_the_input_alone_and_order_is_checked(planted, planted_reference):
    query = planted[240:].copy()
    projected = se.tl.project(query, planted_reference, copy=True)
    assert "X_scembed" not in query.obsm and "X_scembed" in projected.obsm
    with pytest.raises(ParameterError, match="tl.project"):
        se.tl.cluster(query)
    with pytest.raises(ParameterError, match="tl.cluster"):
        se.tl.annotate_clusters(projected)


def test_labels_refuse_cells_projected_onto_another_reference(planted, planted_reference):
    import dataclasses

    other = dataclasses.replace(
        planted_reference, manifest={**planted_reference.manifest, "name": "other"}
    )
    adata = planted[240:].copy()
    se.tl.project(adata, other)
    with pytest.raises(ParameterError, match="another reference"):
        se.tl.transfer_labels(adata, planted_reference)


def test_importing_the_face_is_light():
    code = (
        "import sys, scembed_core as se; se.tl.project; se.read; se.load_reference; "
        "print(sorted(m for m in ('anndata', 'umap', 'gensim', 'dask', 'streamlit') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_one_progress_callback_type_everywhere(capsys):
    import importlib
    import typing

    from scembed_app import progress as app_progress
    from scembed_core._types import ProgressCallback
    from scembed_core.cli import _Bar

    for name in ("project", "train", "tl", "pipeline", "hub.download", "atlas.project"):
        module = importlib.import_module(f"scembed_core.{name}")
        assert module.ProgressCallback is ProgressCallback, name
    hints = typing.get_type_hints(app_progress.progress_bar)
    assert hints["return"] == ProgressCallback
    assert app_progress.ProgressCallback is ProgressCallback
    bar = _Bar("test")  # the command line's bar is called as progress(fraction, message)
    for fraction in (0.0, 0.5, 1.0):
        bar(fraction, "stage")
    bar.close()
    assert "test" in capsys.readouterr().err
