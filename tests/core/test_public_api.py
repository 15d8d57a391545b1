"""The AnnData-first face (``import scembed_core as se``) gives the command line's results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import scembed_core as se
from scembed_core.errors import ParameterError
from scembed_core.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_verbs_equal_the_pipeline_and_record_their_parameters(tmp_path, planted, planted_reference):
    query = planted[240:].copy()
    expected = run_pipeline(query, planted_reference, resolution=1.0)
    adata = query.copy()
    se.tl.project(adata, planted_reference)
    se.tl.cluster(adata, resolution=1.0)
    se.tl.transfer_labels(adata, planted_reference)
    se.tl.annotate_clusters(adata, planted_reference)

    np.testing.assert_array_equal(adata.obsm["X_scembed"], expected.embedding)
    np.testing.assert_allclose(adata.obsm["X_scembed_umap"], expected.umap, atol=1e-6)
    clusters = np.where(expected.clusters >= 0, expected.clusters.astype(str), "Unassigned")
    np.testing.assert_array_equal(adata.obs["scembed_cluster"].astype(str), clusters)
    np.testing.assert_array_equal(
        adata.obs["scembed_label"].astype(str), expected.labels["label"].to_numpy()
    )
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    assert (adata.obs["scembed_label"].astype(str).to_numpy() == truth).mean() >= 0.9
    probabilities = adata.obsm["scembed_label_probabilities"]
    assert probabilities.shape == (adata.n_obs, len(adata.uns["scembed"]["label_classes"]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(adata.obs["scembed_cluster_label"].astype(str)) <= set(truth) | {"Unassigned"}
    params = adata.uns["scembed"]
    assert params["cluster"]["params"]["resolution"] == 1.0
    assert params["project"]["params"]["reference_fingerprint"] == planted_reference.fingerprint
    assert params["transfer_labels"]["params"]["method"] in {"classifier", "knn"}

    path = se.write(adata, tmp_path / "out.h5ad")
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obs["scembed_label"], adata.obs["scembed_label"])
    assert back.uns["scembed"]["transfer_labels"]["params"]["max_mapping_distance"] is None


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
