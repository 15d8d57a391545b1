"""Trust: the dataset verdict (scembed_core.fit), the calibrated Unknown rule
(scembed_core.labels.unknown / loto) and stable answers (a cell's result does not depend on
what else was uploaded), on planted and real data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import planted_dataset

from scembed_core.fit import assess_fit, with_unknown
from scembed_core.labels.assign import UNKNOWN, assign_labels, cluster_table, probabilities_of
from scembed_core.labels.loto import calibrate_trust, flag_unknown, trust_calibration, unknown_rule
from scembed_core.labels.unknown import UnknownRule
from scembed_core.liftover.query import lift_dataset, prepare_query
from scembed_core.project import project
from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference


@pytest.fixture(scope="module")
def reference():
    return load_default_reference()


@pytest.fixture(scope="module")
def demo():
    from scembed_core.io import read_dataset

    return read_dataset(DEMO_QUERY_PATH)


# --------------------------------------------------------------------------- planted Unknown


@pytest.fixture(scope="module")
def planted_absent():
    """A reference of 4 planted types; a query with those 4 and a 5th the reference lacks."""
    from scembed_core.train import TrainingParams, train_reference

    data = planted_dataset(n_types=5, cells_per_type=120, seed=3)
    types = data.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    in_ref = (types != "type4") & (rng.random(data.n_obs) < 0.75)
    params = TrainingParams(epochs=30, window=20, vector_size=16, min_count=2, workers=1)
    reference = train_reference(
        data[in_ref].copy(), label_key="cell_type", params=params, genome="test"
    )
    return reference, data[~in_ref].copy()


def test_a_query_only_type_is_unknown_and_known_types_are_not(planted_absent):
    reference, query = planted_absent
    trust = reference.manifest["trust"]  # calibrated when the reference was built
    rule = UnknownRule.from_dict(trust["unknown_rule"])
    assert rule.coverage_aware and rule.info["source"] == "build"
    assert rule.fpr <= 0.1 and 0 < rule.recall <= 1
    projection = project(query, reference, ev=False)
    labels = assign_labels(
        projection.embedding,
        reference,
        neighbors=projection.neighbors,
        n_regions=projection.coverage.n_regions_per_cell,
    )
    truth = query.obs["cell_type"].astype(str).to_numpy()
    absent = truth == "type4"
    unknown = labels["label"].to_numpy() == UNKNOWN
    assert unknown[absent].mean() >= 0.8
    assert unknown[~absent].mean() <= 0.05
    assert (labels["unknown"].to_numpy() == unknown).all()
    # predicted keeps the closest reference class; known cells keep their right labels
    assert set(labels.loc[absent, "predicted"]) <= {"type0", "type1", "type2", "type3"}
    assert (
        labels["label"].to_numpy()[~absent & ~unknown] == truth[~absent & ~unknown]
    ).mean() > 0.9
    # without the rule (strictness 0) the absent type gets reference labels only
    off = assign_labels(
        projection.embedding, reference, neighbors=projection.neighbors, unknown_rate=0.0
    )
    assert (off["label"] == UNKNOWN).sum() == 0
    # the cluster of the absent type is flagged as a whole
    clusters = np.where(absent, "absent", truth)
    table = cluster_table(clusters, labels, reference).set_index("cluster")
    assert table.loc["absent", "unknown"] and table.loc["absent", "label"] == UNKNOWN
    assert not table.drop(index="absent")["unknown"].any()


def test_stricter_rate_flags_more_and_rule_round_trips(planted_absent):
    reference, query = planted_absent
    rule = unknown_rule(reference)
    assert UnknownRule.from_dict(rule.to_dict()) == rule
    projection = project(query, reference, ev=False)
    emb, nb = projection.embedding, projection.neighbors
    labels = assign_labels(emb, reference, neighbors=nb)
    classes = tuple(c.removeprefix("prob:") for c in labels.columns if c.startswith("prob:"))
    proba = probabilities_of(labels)
    loose, _ = flag_unknown(reference, emb, proba, nb, classes, "cell_type", rate=0.01)
    strict, _ = flag_unknown(reference, emb, proba, nb, classes, "cell_type", rate=0.3)
    assert rule.threshold(0.3) <= rule.threshold(0.05) <= rule.threshold(0.01)
    assert loose.sum() <= strict.sum() and (strict | ~loose).all()
    assert loose.sum() > 0


def test_the_default_reference_rule_is_stored_and_coverage_aware(reference):
    rule = unknown_rule(reference)
    assert rule.info["source"] == "build" and rule.coverage_aware
    assert rule.threshold(0.3) < rule.threshold(0.05) < rule.threshold(0.01)
    assert rule.fpr <= 0.06 and rule.recall > 0.3
    assert set(rule.info["per_type_recall"]) == set(reference.label_model.classes)
    # coverage-aware: fewer regions -> a higher threshold
    assert rule.threshold(0.05, np.array([5])) > rule.threshold(0.05, np.array([1000]))


def test_old_bundle_computes_the_rule_on_load(planted_absent):
    import dataclasses

    reference, _ = planted_absent
    manifest = {k: v for k, v in reference.manifest.items() if k != "trust"}
    old = dataclasses.replace(reference, manifest=manifest)
    calibration = trust_calibration(old)
    assert calibration["coverage_curve"] is None
    rule = UnknownRule.from_dict(calibration["unknown_rule"])
    assert not rule.coverage_aware and rule.info["source"] == "computed from the stored cells"
    assert trust_calibration(old) is calibration  # memoized on the reference


# --------------------------------------------------------------------------- verdicts


def _other_peak_set(adata: ad.AnnData, keep: float = 0.1, seed: int = 0) -> ad.AnnData:
    """The same cells on another peak set: most peaks moved where the universe has none."""
    rng = np.random.default_rng(seed)
    var = adata.var[["chr", "start", "end"]].copy()
    moved = rng.random(len(var)) >= keep
    var.loc[moved, "chr"] = "chr2"
    var.loc[moved, "start"] = 240_000_000 + np.arange(moved.sum()) * 700
    var.loc[moved, "end"] = var.loc[moved, "start"] + 500
    var.index = [
        f"{c}_{s}_{e}" for c, s, e in zip(var["chr"], var["start"], var["end"], strict=True)
    ]
    return ad.AnnData(adata.X.copy(), obs=adata.obs.copy(), var=var)


def _thinned(adata: ad.AnnData, fraction: float, seed: int = 0) -> ad.AnnData:
    x = sp.csr_matrix(adata.X, dtype=np.float32, copy=True)
    x.data = (np.random.default_rng(seed).random(len(x.data)) < fraction).astype(np.float32)
    x.eliminate_zeros()
    return ad.AnnData(x, obs=adata.obs.copy(), var=adata.var.copy())


def test_the_demo_is_good(demo, reference):
    fit = assess_fit(demo, reference)
    assert (fit["verdict"], fit["cause"]) == ("good", "none")
    numbers = fit["numbers"]
    assert numbers["peak_overlap"] == 1.0 and numbers["detected_build"] == "hg19"
    assert 0.7 < numbers["expected_accuracy"] <= numbers["full_accuracy"]
    assert str(round(100 * numbers["expected_accuracy"])) + "%" in fit["reason"]


def test_another_peak_set_is_named_as_such(demo, reference):
    fit = assess_fit(_other_peak_set(demo), reference)
    assert (fit["verdict"], fit["cause"]) == ("does_not_fit", "peak_set")
    assert fit["numbers"]["peak_overlap"] < 0.15
    assert "peak set" in fit["reason"] and "build is not the problem" in fit["reason"]


def test_thinned_cells_are_low_depth(demo, reference):
    fit = assess_fit(_thinned(demo, 0.1), reference)
    assert fit["cause"] == "low_depth" and fit["verdict"] in ("caution", "does_not_fit")
    assert fit["numbers"]["expected_accuracy"] < 0.7
    assert fit["numbers"]["peak_overlap"] == 1.0  # same peaks: not a peak-set problem


def test_hg38_copy_is_a_build_problem_until_lifted(demo, reference):
    lifted, _ = lift_dataset(demo, "hg19", "hg38")
    var = lifted.var[["chr", "start", "end"]].copy()
    var.index = var["chr"] + "_" + var["start"].astype(str) + "_" + var["end"].astype(str)
    keep = ~pd.Index(var.index).duplicated()
    hg38 = ad.AnnData(lifted.X[:, keep], obs=demo.obs.copy(), var=var[keep])
    before = assess_fit(hg38, reference)
    assert (before["verdict"], before["cause"]) == ("does_not_fit", "genome_build")
    assert "hg38" in before["reason"]
    prepared = prepare_query(hg38, reference)
    after = assess_fit(
        prepared.adata,
        reference,
        detection=prepared.detection,
        detect=False,
        lifted_from=prepared.liftover["source_build"],
    )
    assert (after["verdict"], after["cause"]) == ("good", "none")


def test_many_unknown_cells_name_cell_types():
    base = {"verdict": "good", "cause": "none", "reason": "Fine.", "numbers": {}}
    assert with_unknown(base, 0.02)["cause"] == "none"
    assert with_unknown(base, 0.3)[("cause")] == "cell_types"
    assert with_unknown(base, 0.3)["verdict"] == "caution"
    assert with_unknown(base, 0.7)["verdict"] == "does_not_fit"
    other = {**base, "verdict": "does_not_fit", "cause": "peak_set"}
    assert with_unknown(other, 0.7)["cause"] == "peak_set"  # the first cause stays


def test_strict_command_line_refuses_a_dataset_that_does_not_fit(demo, tmp_path, capsys):
    from scembed_core.cli import main

    path = tmp_path / "other.h5ad"
    _other_peak_set(demo[:300].copy()).write_h5ad(path)
    code = main(["project", str(path), "--out", str(tmp_path / "o.h5ad"), "--no-ev", "--strict"])
    err = capsys.readouterr()
    assert code == 2
    assert "does not fit" in err.err and "peak set" in err.err
    assert not (tmp_path / "o.h5ad").exists()
    code = main(["project", str(path), "--out", str(tmp_path / "o.h5ad"), "--no-ev"])
    assert code == 0 and "fit: does_not_fit (cause: peak_set)" in capsys.readouterr().out
    written = ad.read_h5ad(tmp_path / "o.h5ad")
    assert written.uns["scembed"]["fit"]["cause"] == "peak_set"


# --------------------------------------------------------------------------- stable answers


def test_subset_and_reordering_give_every_cell_the_same_answer(demo, reference):
    full = project(demo, reference)
    n_full = full.coverage.n_regions_per_cell
    labels = assign_labels(full.embedding, reference, neighbors=full.neighbors, n_regions=n_full)
    for rows in (np.arange(500, 900), np.random.default_rng(1).permutation(demo.n_obs)):
        part = project(demo[rows].copy(), reference)
        np.testing.assert_array_equal(part.umap, full.umap[rows])
        np.testing.assert_array_equal(part.analysis, full.analysis[rows])
        got = assign_labels(
            part.embedding,
            reference,
            neighbors=part.neighbors,
            n_regions=part.coverage.n_regions_per_cell,
        )
        assert (got["label"].to_numpy() == labels["label"].to_numpy()[rows]).all()
        np.testing.assert_allclose(probabilities_of(got), probabilities_of(labels)[rows], atol=1e-6)


def test_calibration_is_deterministic(planted_absent):
    reference, _ = planted_absent
    import json

    again = json.dumps(calibrate_trust(reference), sort_keys=True)
    assert again == json.dumps(calibrate_trust(reference), sort_keys=True)
