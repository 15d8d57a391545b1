"""run.json (issue 15): validation names the bad key; the command line takes every
parameter from the file and options given explicitly win; real runs on the demo query."""

from __future__ import annotations

import json

import anndata as ad
import pytest

from scembed_core import __version__, cli
from scembed_core.errors import ParameterError
from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference
from scembed_core.runspec import (
    PARAM_DEFAULTS,
    build_run_spec,
    cli_reference,
    file_sha256,
    read_run_spec,
    run_command,
)


@pytest.fixture(scope="module")
def reference():
    return load_default_reference()


@pytest.fixture(scope="module")
def demo_sha():
    return file_sha256(DEMO_QUERY_PATH)


def spec_doc(reference, demo_sha, **params):
    return build_run_spec(
        reference_spec="default",
        reference=reference,
        params=params,
        input_name=DEMO_QUERY_PATH.name,
        input_sha256=demo_sha,
        n_cells=1550,
    )


def test_build_and_read_round_trip(tmp_path, reference, demo_sha):
    doc = spec_doc(reference, demo_sha, resolution=0.5, min_confidence=0.5)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    spec = read_run_spec(path)
    assert spec.params == {**PARAM_DEFAULTS, "resolution": 0.5, "min_confidence": 0.5}
    assert spec.reference == {
        "spec": "default",
        "name": reference.name,
        "genome": "hg19",
        "fingerprint": reference.fingerprint,
        "revision": None,
    }
    assert spec.input == {"name": "demo_query.h5ad", "sha256": demo_sha, "n_cells": 1550}
    assert doc["scembed_version"] == __version__ and doc["created"].endswith("+00:00")
    assert doc["command"] == run_command() and "--params run.json" in doc["command"]
    assert read_run_spec(doc).to_dict()["params"] == doc["params"]
    hub = build_run_spec(reference_spec="hf:databio/model@abc123", params={})
    assert hub["reference"]["revision"] == "abc123"
    assert read_run_spec(hub).reference["spec"] == "hf:databio/model@abc123"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("resolution", -1),
        ("resolution", "high"),
        ("resolution", float("nan")),
        ("resolution", True),
        ("n_clusters", 1),
        ("n_clusters", 3.5),
        ("method", "kmeans"),
        ("k_neighbors", 0),
        ("k_neighbors", 15.0),
        ("n_neighbors", 1),
        ("min_confidence", 1.5),
        ("min_confidence", None),
        ("max_mapping_distance", -0.1),
        ("unknown_rate", 1.5),
        ("unknown_rate", "strict"),
        ("label_key", 3),
        ("label_method", "svm"),
        ("seed", -1),
        ("seed", "0"),
        ("query_genome", "mm10"),
        ("liftover", "yes"),
        ("ev", 1),
        ("layer", ""),
        ("resolutoin", 0.5),
    ],
)
def test_a_bad_parameter_is_named(key, value):
    doc = {"reference": {"spec": "default"}, "params": {key: value}}
    with pytest.raises(ParameterError) as error:
        read_run_spec(doc)
    assert f"params.{key}" in str(error.value)


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({"params": {}}, "reference"),
        ({"reference": {}, "params": {}}, "reference.spec"),
        ({"reference": {"spec": 3}, "params": {}}, "reference.spec"),
        ({"reference": {"spec": "default"}}, "params"),
        ({"reference": {"spec": "default"}, "params": []}, "params"),
        ({"reference": {"spec": "default"}, "params": {}, "extra": 1}, "'extra'"),
        ({"reference": {"spec": "default"}, "params": {}, "input": {"sha256": "xyz"}}, "sha256"),
        ({"reference": {"spec": "default"}, "params": {}, "input": {"n_cells": -3}}, "n_cells"),
        (
            {"reference": {"spec": "default"}, "params": {"resolution": 0.5, "n_clusters": 8}},
            "params.n_clusters",
        ),
    ],
)
def test_a_bad_file_structure_is_named(doc, named):
    with pytest.raises(ParameterError) as error:
        read_run_spec(doc)
    assert named in str(error.value)


def test_n_clusters_alone_means_a_resolution_search():
    spec = read_run_spec({"reference": {"spec": "default"}, "params": {"n_clusters": 8}})
    assert spec.params["n_clusters"] == 8 and spec.params["resolution"] is None


def test_unreadable_files(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        read_run_spec(tmp_path / "missing.json")
    bad = tmp_path / "run.json"
    bad.write_text("{not json")
    with pytest.raises(ParameterError, match="not valid JSON"):
        read_run_spec(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ParameterError, match="JSON object"):
        read_run_spec(bad)


def test_reference_specs_for_the_command_line():
    def spec(text):
        return read_run_spec({"reference": {"spec": text}, "params": {}})

    assert cli_reference(spec("default")) == "default"
    assert cli_reference(spec("hf:o/n@r")) == "hf:o/n@r"
    assert cli_reference(spec("folder:/data/bundle")) == "/data/bundle"
    with pytest.raises(ParameterError) as error:
        cli_reference(spec("session:my-reference"))
    assert "--reference FOLDER" in str(error.value) and "download" in str(error.value).lower()


# -- the command line -------------------------------------------------------------------
def write_spec(tmp_path, doc) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_the_file_sets_every_parameter_and_flags_win(tmp_path, capsys, reference, demo_sha):
    doc = spec_doc(
        reference,
        demo_sha,
        ev=False,
        resolution=0.5,
        min_confidence=0.5,
        label_method="knn",
        unknown_rate=0.2,
    )
    run = write_spec(tmp_path, doc)
    out = tmp_path / "from_file.h5ad"
    assert cli.main(["project", str(DEMO_QUERY_PATH), "--params", run, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err, captured.err
    params = ad.read_h5ad(out).uns["scembed"]["params"]
    assert params["resolution"] == 0.5 and params["min_confidence"] == 0.5
    # the Unknown strictness from the file: 1-2% of the demo at the calibrated 5%
    assert params["unknown_rate"] == 0.2
    assert ad.read_h5ad(out).obs["scembed_unknown"].mean() > 0.05
    assert params["label_method_requested"] == "knn"
    assert "X_scembed_umap" not in ad.read_h5ad(out).obsm  # ev: false from the file

    # Explicit options win, even one equal to the built-in default (--resolution 1.0).
    out2 = tmp_path / "flags.h5ad"
    args = ["project", str(DEMO_QUERY_PATH), "--params", run, "--out", str(out2)]
    flags = ["--resolution", "1.0", "--label-method", "classifier", "--unknown-rate", "0"]
    assert cli.main([*args, *flags]) == 0
    params = ad.read_h5ad(out2).uns["scembed"]["params"]
    assert params["resolution"] == 1.0 and params["label_method_requested"] == "classifier"
    assert params["min_confidence"] == 0.5  # still from the file
    assert params["unknown_rate"] == 0.0 and not ad.read_h5ad(out2).obs["scembed_unknown"].any()


def test_out_defaults_to_the_input_stem(tmp_path, monkeypatch, reference, demo_sha):
    run = write_spec(tmp_path, spec_doc(reference, demo_sha, ev=False))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["project", str(DEMO_QUERY_PATH), "--params", run]) == 0
    assert ad.read_h5ad(tmp_path / "demo_query_scembed.h5ad").n_obs == 1550


def test_n_clusters_flag_overrides_the_files_resolution(tmp_path, reference, demo_sha):
    run = write_spec(tmp_path, spec_doc(reference, demo_sha, ev=False, resolution=0.5))
    out = tmp_path / "k.h5ad"
    args = ["project", str(DEMO_QUERY_PATH), "--params", run, "--out", str(out)]
    assert cli.main([*args, "--n-clusters", "6"]) == 0
    assert ad.read_h5ad(out).obs["scembed_cluster"].nunique() in range(4, 9)


def test_other_input_or_reference_warns(tmp_path, capsys, reference, demo_sha):
    doc = spec_doc(reference, demo_sha, ev=False)
    doc["input"]["sha256"] = "0" * 64
    doc["reference"]["fingerprint"] = "f" * 64
    run = write_spec(tmp_path, doc)
    out = tmp_path / "o.h5ad"
    assert cli.main(["project", str(DEMO_QUERY_PATH), "--params", run, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sha256" in err and "not the input" in err
    assert "not the one" in err and "fingerprint" in err


@pytest.mark.parametrize(
    ("params", "reference_spec", "message"),
    [
        ({"resolution": "high"}, "default", "params.resolution"),
        ({}, "session:mine", "--reference FOLDER"),
    ],
)
def test_a_bad_file_is_one_error_line(tmp_path, capsys, params, reference_spec, message):
    run = write_spec(tmp_path, {"reference": {"spec": reference_spec}, "params": params})
    out = tmp_path / "o.h5ad"
    code = cli.main(["project", str(DEMO_QUERY_PATH), "--params", run, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err
    assert "Traceback" not in err and not out.exists()


def test_session_reference_can_be_overridden_with_a_folder(tmp_path, capsys):
    from scembed_core.reference import PACKAGE_DATA

    folders = [p.parent for p in PACKAGE_DATA.rglob("manifest.json")]
    assert folders, "the built-in reference is a bundle folder"
    run = write_spec(tmp_path, {"reference": {"spec": "session:mine"}, "params": {"ev": False}})
    out = tmp_path / "o.h5ad"
    args = ["project", str(DEMO_QUERY_PATH), "--params", run, "--out", str(out)]
    assert cli.main([*args, "--reference", str(folders[0])]) == 0
    assert out.is_file()


def test_out_is_required_without_params(capsys):
    assert cli.main(["project", str(DEMO_QUERY_PATH)]) == 2
    assert "--out" in capsys.readouterr().err


def test_help_says_flags_win(capsys):
    with pytest.raises(SystemExit):
        cli.main(["project", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--params" in text and "override" in text
