"""The label classifier: numpy vs scikit-learn, calibration, bundles, absent types, one rule."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import planted_dataset

from scembed_core.errors import ParameterError, ReferenceBundleError
from scembed_core.labels.assign import (
    ABSENT_WARNING,
    LabelModelMissingWarning,
    assign_labels,
    cluster_table,
    explain_label,
    label_classes,
    probabilities_of,
    resolve_label_method,
)
from scembed_core.labels.classifier import (
    LABEL_MODEL_FILES,
    LabelModelParams,
    calibration_summary,
    features_of,
    fit_label_model,
    softmax,
)
from scembed_core.labels.vote import knn_labels
from scembed_core.project import project
from scembed_core.reference import (
    DEFAULT_REFERENCE_DIR,
    load_bundle,
    load_default_reference,
    save_reference,
)
from scembed_core.train import build_reference


def gaussian_cells(n_per_class: int = 400, n_classes: int = 4, dim: int = 12, *, seed: int = 0):
    """Overlapping Gaussian classes with a shared covariance (logistic regression is the
    true model here, so its probabilities should be calibrated): about 80% separable."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.45, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + rng.normal(0, 1.0, (len(labels), dim))
    order = rng.permutation(len(labels))
    return x[order].astype(np.float32), np.array([f"c{i}" for i in labels[order]])


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("n_classes", "params"),
    [
        (4, LabelModelParams()),
        (4, LabelModelParams(C=1.0, class_weight="balanced")),
        (2, LabelModelParams(C=0.3)),
    ],
)
def test_numpy_predict_proba_equals_sklearn(n_classes, params):
    from sklearn.linear_model import LogisticRegression

    x, y = gaussian_cells(150, n_classes, seed=1)
    model = fit_label_model(x, y, params=params, calibrate=False)
    xs = (x.astype(np.float64) - model.mean) / model.scale
    reference = LogisticRegression(
        C=params.C, class_weight=params.class_weight, max_iter=params.max_iter, random_state=0
    ).fit(xs, y)
    assert list(reference.classes_) == list(model.classes)
    np.testing.assert_allclose(model.predict_proba(x), reference.predict_proba(xs), atol=1e-8)
    assert model.predict_proba(x).shape == (len(x), n_classes)
    # with calibration, the stored model is the same fit (warm-started from the held-out
    # fit: the same optimum to lbfgs' tolerance) with its held-out temperature
    calibrated = fit_label_model(x, y, params=params)
    assert calibrated.temperature != 1.0
    np.testing.assert_allclose(calibrated.coef, model.coef, atol=5e-3)
    logits = reference.decision_function(xs)
    if n_classes == 2:
        logits = np.column_stack([-logits / 2, logits / 2])
    np.testing.assert_allclose(
        calibrated.predict_proba(x), softmax(logits / calibrated.temperature), atol=1e-2
    )


def test_probabilities_are_calibrated_on_held_out_cells():
    x, y = gaussian_cells(500, seed=2)
    train, test = slice(0, 1400), slice(1400, None)
    model = fit_label_model(x[train], y[train], params=LabelModelParams(C=1.0, knn_weight=0.0))
    codes = pd.Index(model.classes).get_indexer(y[test])
    summary = calibration_summary(model.predict_proba(x[test]), codes)
    assert 0.6 < summary["accuracy"] < 0.95  # overlapping classes: probabilities matter
    assert abs(summary["mean_confidence"] - summary["accuracy"]) <= 0.05
    assert summary["ece"] <= 0.05
    # the hold-out calibration stored with the model says the same
    stored = model.calibration
    assert stored["n_cells"] == pytest.approx(0.2 * 1400, abs=4)
    assert abs(stored["mean_confidence"] - stored["accuracy"]) <= 0.05
    assert sum(stored["reliability"]["count"]) == stored["n_cells"]
    # accuracy rises as the threshold removes unsure cells; coverage falls
    coverage = np.asarray(summary["coverage"]["coverage"])
    assert coverage[0] == 1.0 and np.all(np.diff(coverage) <= 0)
    assert summary["coverage"]["accuracy"][10] > summary["coverage"]["accuracy"][0]


def test_the_calibration_check_catches_overconfidence():
    x, y = gaussian_cells(500, seed=2)
    model = fit_label_model(
        x[:1400], y[:1400], params=LabelModelParams(C=1.0, knn_weight=0.0), calibrate=False
    )
    sharp = dataclasses.replace(model, coef=model.coef * 5, intercept=model.intercept * 5)
    codes = pd.Index(model.classes).get_indexer(y[1400:])
    summary = calibration_summary(sharp.predict_proba(x[1400:]), codes)
    assert summary["mean_confidence"] - summary["accuracy"] > 0.05
    assert summary["ece"] > 0.05


def test_bad_parameters_are_refused():
    x, y = gaussian_cells(20, seed=0)
    with pytest.raises(ParameterError, match="space"):
        LabelModelParams(space="pca")
    with pytest.raises(ParameterError, match="two classes"):
        fit_label_model(x, np.full(len(x), "a"))
    with pytest.raises(ParameterError, match="whitening"):
        features_of(x, None, "whitened")


# --------------------------------------------------------------------------- planted references


@pytest.fixture(scope="module")
def query(planted):
    return planted[240:].copy()


@pytest.fixture(scope="module")
def projection(query, planted_reference):
    return project(query, planted_reference, ev=False)


def test_reference_build_fits_a_calibrated_classifier(planted_reference, query, projection):
    model = planted_reference.label_model
    assert model is not None and model.classes == ("type0", "type1", "type2", "type3")
    assert planted_reference.manifest["label_model"]["ece"] == model.calibration["ece"]
    labels = assign_labels(projection.embedding, planted_reference, neighbors=projection.neighbors)
    truth = query.obs["cell_type"].to_numpy()
    accuracy = float((labels["label"].to_numpy() == truth).mean())
    assert accuracy >= 0.95
    # held-out planted cells: mean top probability within 0.05 of the observed accuracy
    assert abs(float(labels["confidence"].mean()) - accuracy) <= 0.05
    proba = probabilities_of(labels)
    assert label_classes(labels) == list(model.classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(labels["confidence"], proba.max(axis=1), rtol=1e-6)


def test_knn_method_labels_the_top_vote(planted_reference, projection):
    votes = knn_labels(projection.embedding, planted_reference, neighbors=projection.neighbors)
    new = assign_labels(
        projection.embedding, planted_reference, method="knn", neighbors=projection.neighbors
    )
    proba = votes.drop(columns="mapping_distance").to_numpy()
    np.testing.assert_allclose(probabilities_of(new), proba, rtol=1e-6)
    names = np.asarray(label_classes(new))
    assert (new["predicted"].to_numpy() == names[proba.argmax(axis=1)]).all()
    np.testing.assert_allclose(new["confidence"], proba.max(axis=1))
    np.testing.assert_allclose(new["mapping_distance"], votes["mapping_distance"])
    # the vote fractions are the blend's kNN part: with knn_weight 1 the classifier agrees
    model = dataclasses.replace(
        planted_reference.label_model,
        params=dataclasses.replace(planted_reference.label_model.params, knn_weight=1.0),
    )
    knn_only = dataclasses.replace(planted_reference, label_model=model)
    blended = assign_labels(projection.embedding, knn_only, neighbors=projection.neighbors)
    np.testing.assert_allclose(probabilities_of(blended), probabilities_of(new), atol=1e-6)


def test_probability_threshold_sets_unassigned(planted_reference, projection):
    everything = assign_labels(
        projection.embedding, planted_reference, neighbors=projection.neighbors
    )
    threshold = float(np.median(everything["confidence"]))
    labels = assign_labels(
        projection.embedding,
        planted_reference,
        neighbors=projection.neighbors,
        min_confidence=threshold,
    )
    unsure = labels["confidence"].to_numpy() < threshold
    assert unsure.any()
    assert (labels.loc[unsure, "label"] == "Unassigned").all()
    assert (labels.loc[~unsure, "label"] == labels.loc[~unsure, "predicted"]).all()


def test_bundle_stores_the_model_as_plain_arrays(planted_reference, projection, tmp_path):
    folder = save_reference(planted_reference, tmp_path / "bundle").path
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in LABEL_MODEL_FILES.values():
        assert name in manifest["files"]
    for path in folder.iterdir():  # nothing a label model needs is a pickle
        if path.name.startswith("label_model"):
            if path.suffix == ".npy":
                np.load(path, allow_pickle=False)
            else:
                json.loads(path.read_text())
    loaded = load_bundle(folder)
    assert loaded.label_model.classes == planted_reference.label_model.classes
    np.testing.assert_array_equal(loaded.label_model.coef, planted_reference.label_model.coef)
    before = assign_labels(projection.embedding, planted_reference, neighbors=projection.neighbors)
    after = assign_labels(projection.embedding, loaded, neighbors=projection.neighbors)
    pd.testing.assert_frame_equal(before, after)
    # a tampered array is caught by the checksums
    np.save(folder / LABEL_MODEL_FILES["coef"], loaded.label_model.coef * 2)
    with pytest.raises(ReferenceBundleError, match="Checksum"):
        load_bundle(folder)


def test_old_bundle_without_classifier_falls_back_to_knn(planted_reference, projection, tmp_path):
    old = dataclasses.replace(planted_reference, label_model=None)
    folder = save_reference(old, tmp_path / "old").path
    loaded = load_bundle(folder)
    assert loaded.label_model is None
    method, note = resolve_label_method(loaded, "classifier")
    assert method == "knn" and "no label classifier" in note
    with pytest.warns(LabelModelMissingWarning, match="nearest-neighbour vote"):
        labels = assign_labels(projection.embedding, loaded, neighbors=projection.neighbors)
    knn = assign_labels(projection.embedding, loaded, method="knn", neighbors=projection.neighbors)
    pd.testing.assert_frame_equal(labels, knn)


def test_absent_type_cluster_is_flagged(planted, planted_reference, query):
    truth = planted.obs["cell_type"].to_numpy()
    without = planted[:240][truth[:240] != "type3"].copy()
    reference = build_reference(
        planted_reference.model, without, label_key="cell_type", fit_umap=False, genome="test"
    )
    assert reference.label_model.classes == ("type0", "type1", "type2")
    mapped = project(query, reference, ev=False)
    labels = assign_labels(mapped.embedding, reference, neighbors=mapped.neighbors)
    clusters = query.obs["cell_type"].to_numpy()
    table = cluster_table(clusters, labels, reference).set_index("cluster")
    assert table.loc["type3", "possibly_absent"]
    assert not table.drop(index="type3")["possibly_absent"].any()
    q99 = reference.manifest["mapping_distance_q99"]
    assert table.loc["type3", "median_mapping_distance"] > q99
    assert "reference does not contain" in ABSENT_WARNING
    # the same reference over the full pipeline: the cluster made of type3 cells is flagged
    from scembed_core.pipeline import annotated_adata, run_pipeline

    result = run_pipeline(query, reference, ev=False, n_clusters=4)
    out = annotated_adata(result)
    is_type3 = clusters == "type3"
    assert out.obs["scembed_cluster_possibly_absent"].to_numpy()[is_type3].mean() >= 0.9
    assert out.obs["scembed_cluster_possibly_absent"].to_numpy()[~is_type3].mean() <= 0.1


def test_explain_label_lists_top_classes_and_neighbours(planted_reference, projection):
    labels = assign_labels(projection.embedding, planted_reference, neighbors=projection.neighbors)
    why = explain_label(labels, projection.neighbors, planted_reference, 0)
    assert len(why["top"]) == 3
    assert why["top"]["class"].iloc[0] == labels["predicted"].iloc[0]
    assert why["top"]["probability"].is_monotonic_decreasing
    assert why["neighbors"]["n_neighbors"].sum() == 15
    assert why["mapping_distance"] == pytest.approx(labels["mapping_distance"].iloc[0])
    with pytest.raises(ParameterError):
        explain_label(labels, projection.neighbors, planted_reference, len(labels))


# --------------------------------------------------------------------------- one rule everywhere


def test_cli_app_and_dask_give_the_same_labels(planted_reference, query, tmp_path):
    import logging

    import anndata as ad

    distributed = pytest.importorskip("distributed")
    from scembed_app import cached
    from scembed_core.atlas import project_out_of_core
    from scembed_core.cli import main

    folder = save_reference(planted_reference, tmp_path / "ref").path
    path = tmp_path / "query.h5ad"
    query.write_h5ad(path)
    out = tmp_path / "cli.h5ad"
    args = ["project", str(path), "--reference", str(folder), "--out", str(out), "--no-ev"]
    assert main([*args, "--trust", "--csv"]) == 0
    cli = ad.read_h5ad(out)
    classes = list(cli.uns["scembed"]["label_classes"])
    assert classes == list(planted_reference.label_model.classes)
    csv = pd.read_csv(out.with_suffix(".csv"), index_col=0)
    np.testing.assert_allclose(
        csv[[f"scembed_prob_{c}" for c in classes]].to_numpy(),
        cli.obsm["scembed_label_probabilities"],
        rtol=1e-5,
        atol=1e-7,
    )

    reference = load_bundle(folder)
    projection = project(query, reference, ev=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no Streamlit runtime: cache warnings only
        app = cached.cached_transfer(
            "planted|test", "cell_type", "classifier", 15, 0.0, None,
            projection.embedding, reference, projection.neighbors,
        )  # fmt: skip
    np.testing.assert_array_equal(cli.obs["scembed_label"].astype(str), app["label"])
    np.testing.assert_allclose(
        cli.obsm["scembed_label_probabilities"], probabilities_of(app), rtol=1e-6, atol=1e-7
    )

    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
        silence_logs=logging.ERROR,
    )  # fmt: skip
    with cluster, distributed.Client(cluster) as client:
        zarr_out = tmp_path / "dask.zarr"
        project_out_of_core(
            path, reference, zarr_out, chunk_size=30, scheduler=client, ev=False, trust=True
        )
    dask = ad.read_zarr(zarr_out)
    np.testing.assert_array_equal(dask.obs["scembed_label"].astype(str), app["label"])
    np.testing.assert_allclose(
        dask.obsm["scembed_label_probabilities"], probabilities_of(app), rtol=1e-5, atol=1e-7
    )
    assert list(dask.uns["scembed"]["label_classes"]) == classes


def test_builtin_bundle_has_a_classifier_without_pickles():
    reference = load_default_reference()
    model = reference.label_model
    assert model is not None and model.label_key == "cell_type" and len(model.classes) == 16
    for name in LABEL_MODEL_FILES.values():
        path = DEFAULT_REFERENCE_DIR / name
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
    calibration = model.calibration
    assert calibration["ece"] < 0.1 and calibration["accuracy"] > 0.7
    assert reference.manifest["label_model"]["params"] == model.params.to_dict()


def test_planted_with_more_types_still_separates():
    # guard against a model that only works for the fixture's four types
    data = planted_dataset(n_types=6, cells_per_type=60, seed=3)
    x = np.asarray(data.X.toarray(), dtype=np.float32)
    model = fit_label_model(x, data.obs["cell_type"].to_numpy())
    assert model.calibration["accuracy"] >= 0.95
