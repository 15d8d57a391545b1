"""The app's results are reproduced by ``python -m scembed_core project INPUT --params run.json``
(issue 15): the real pages are driven with AppTest on the demo query, the run's settings are
written to run.json, the real command runs in a subprocess, and labels, clusters and map
coordinates are compared (identical labels and clusters, coordinates within 1e-6)."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from apptest_tools import button
from conftest import PBMC_TINY
from streamlit.testing.v1 import AppTest

from scembed_app import state
from scembed_core.reference import DEMO_QUERY_PATH

# Its own xdist group: runs beside the long "app" group rather than after it.
pytestmark = [pytest.mark.xdist_group("reproduce"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 240


def checked(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def app_session(
    resolution: float | None,
    min_confidence: float | None,
    upload: Path | None = None,
    annotate: tuple = (),
) -> dict:
    """Drive the real pages on the demo query (or an upload); return the session's state.

    ``annotate``: more ``(widget kind, key, value)`` to set on the Annotation page.
    """
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    checked(at.run())
    checked(at.switch_page(state.PAGE_DATA).run())
    if upload is None:
        checked(button(at, "Load demo dataset").click().run())
    else:
        files = [(upload.name, upload.read_bytes(), "application/octet-stream")]
        checked(at.file_uploader(key="upload_files").set_value(files).run())
    checked(at.switch_page(state.PAGE_PROJECT).run())
    checked(button(at, "Project cells").click().run())
    checked(at.switch_page(state.PAGE_CLUSTERS).run())
    if resolution is not None:
        checked(at.slider(key="w_resolution").set_value(resolution).run())
    checked(at.switch_page(state.PAGE_ANNOTATE).run())
    if min_confidence is not None:
        checked(at.slider(key="w_min_confidence").set_value(min_confidence).run())
    for kind, key, value in annotate:
        checked(getattr(at, kind)(key=key).set_value(value).run())
    checked(at.switch_page(state.PAGE_EXPORT).run())
    commands = [c.value for c in at.code if "--params run.json" in c.value]
    assert len(commands) == 1, [c.value for c in at.code]
    captions = [c.value for c in at.caption]
    return {
        **dict(at.session_state.items()),
        "test_command": commands[0],
        "test_captions": captions,
    }


def export_view() -> None:
    """The Export page's per-cell table and run.json, composed as the page composes them
    (run by AppTest; the function's source is the script, so it imports what it uses)."""
    import streamlit as st

    from scembed_app import cached, exports, results, state

    ref_key, reference = cached.active_reference()
    dataset = st.session_state[state.DATASET]
    run = st.session_state[state.PROJECTION]
    transferred = results.labels(run, reference, dataset.adata.obs_names)
    settings = results.export_settings(dataset, ref_key, reference)
    annotated = results.annotated(run, dataset, reference, transferred, settings, counts=False)
    st.session_state["test_table"] = exports.per_cell_table(annotated)
    st.session_state["test_run_spec"] = results.run_document(run, dataset, reference, settings)


def app_results(session: dict) -> tuple[object, dict]:
    at = AppTest.from_function(export_view, default_timeout=TIMEOUT)
    for key, value in session.items():
        at.session_state[key] = value
    checked(at.run())
    return at.session_state["test_table"], at.session_state["test_run_spec"]


@pytest.mark.parametrize(
    ("resolution", "min_confidence", "lifted", "unknown_rate"),
    [
        (None, None, None, None),
        (0.5, 0.5, None, 0.15),
        (0.8, None, "demo", None),
        (None, None, "pbmc", None),
    ],
    ids=["defaults", "changed", "hg38-upload-lifted", "hg38-pbmc-unmapped-cells"],
)
def test_the_command_reproduces_the_app(tmp_path, resolution, min_confidence, lifted, unknown_rate):
    """``lifted``: an hg38 upload, which the app lifts at upload and the command in-run (the
    demo itself, or the real PBMC fixture, where 8 of 20 cells map nowhere after lifting).
    ``unknown_rate``: the Annotation page's Unknown strictness (default 0.05, the calibrated
    point), recorded in run.json; the command calls the same cells Unknown."""
    if lifted == "demo":
        from test_app_liftover import write_demo_hg38

        (tmp_path / "upload").mkdir()
        query = write_demo_hg38(tmp_path / "upload" / "demo_hg38.h5ad")
    elif lifted == "pbmc":
        query = PBMC_TINY
    else:
        query = DEMO_QUERY_PATH
    annotate = () if unknown_rate is None else (("slider", "w_unknown_rate", unknown_rate),)
    session = app_session(
        resolution, min_confidence, upload=query if lifted else None, annotate=annotate
    )
    if lifted:
        assert session[state.DATASET].liftover["source_build"] == "hg38"
    table, spec = app_results(session)
    assert spec["params"]["resolution"] == (1.0 if resolution is None else resolution)
    assert spec["params"]["min_confidence"] == (min_confidence or 0.0)
    rate = 0.05 if unknown_rate is None else unknown_rate
    assert spec["params"]["unknown_rate"] == rate
    cli = run_command(tmp_path, query, spec, session["test_command"])
    assert_same(cli, table)
    params = cli.uns["scembed"]["params"]
    assert params["unknown_rate"] == rate
    unknown = cli.obs["scembed_unknown"].to_numpy(dtype=bool)
    np.testing.assert_array_equal(unknown, table["scembed_unknown"].to_numpy(dtype=bool))
    if unknown_rate is not None:  # 1.2% of the demo at the calibrated 5%; 4% at 15%
        assert unknown.mean() > 0.025, unknown.mean()
        assert any("Unknown strictness 15%" in c for c in session["test_captions"])
    assert params["resolution"] == (1.0 if resolution is None else resolution)
    assert params["min_confidence"] == (0.0 if min_confidence is None else min_confidence)
    if min_confidence:
        assert (table["scembed_label"] == "Unassigned").sum() > 0
    if lifted:
        assert cli.uns["scembed"]["liftover"]["source_build"] == "hg38"


def test_knn_vote_and_distance_limit_are_reproduced(tmp_path):
    """The kNN vote and the mapping-distance limit (default: the reference's 99th percentile)."""
    annotate = (("radio", "w_label_method", "knn"), ("toggle", "w_limit_distance", True))
    session = app_session(None, None, annotate=annotate)
    table, spec = app_results(session)
    assert spec["params"]["label_method"] == "knn"
    assert spec["params"]["max_mapping_distance"] == session[state.MAX_DISTANCE] > 0
    cli = run_command(tmp_path, DEMO_QUERY_PATH, spec, session["test_command"])
    assert_same(cli, table)
    assert cli.uns["scembed"]["params"]["label_method"] == "knn"
    far = table["scembed_mapping_distance"] > session[state.MAX_DISTANCE]
    assert far.any() and (table.loc[far, "scembed_label"] == "Unassigned").all()


def run_command(tmp_path: Path, query: Path, spec: dict, command: str) -> ad.AnnData:
    """Run the exact command the Export page shows, beside the input and run.json."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "scembed_core", "project"], command
    assert spec["input"]["name"] == words[4] and spec["input"]["sha256"] is not None
    (tmp_path / words[4]).symlink_to(query)
    (tmp_path / "run.json").write_text(json.dumps(spec, indent=2))
    done = subprocess.run(
        [sys.executable, *words[1:]],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    # The same input file and reference (coverage warnings may appear, as in the app).
    assert "not the input" not in done.stderr and "not the one" not in done.stderr
    return ad.read_h5ad(tmp_path / words[words.index("--out") + 1])


def assert_same(cli: ad.AnnData, table) -> None:
    """The command's output equals the app's per-cell table."""
    assert list(cli.obs_names) == list(table.index)
    # Labels: identical, and so are the confidences and every class's probability.
    np.testing.assert_array_equal(
        cli.obs["scembed_label"].astype(str).to_numpy(), table["scembed_label"].astype(str)
    )
    np.testing.assert_allclose(
        cli.obs["scembed_label_confidence"].to_numpy(),
        table["scembed_label_confidence"].to_numpy(),
        rtol=0,
        atol=1e-6,
    )
    classes = list(cli.uns["scembed"]["label_classes"])
    app_probs = table[[f"scembed_prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(
        cli.obsm["scembed_label_probabilities"], app_probs, rtol=0, atol=1e-6
    )
    # Clusters: identical numbers, and the same name for cells that mapped nowhere.
    np.testing.assert_array_equal(
        cli.obs["scembed_cluster"].astype(str).to_numpy(),
        table["scembed_cluster"].astype(str).to_numpy(),
    )
    # not a trivial comparison: several clusters (a 2-epoch trained reference gives 4 on the
    # demo since this round's merges, 5+ before: not yet explained, see the closing note)
    assert table["scembed_cluster"].nunique() >= min(4, len(table) // 5)
    # Map coordinates within 1e-6.
    app_coords = table[["scembed_umap_1", "scembed_umap_2"]].to_numpy()
    np.testing.assert_allclose(
        cli.obsm["X_scembed_umap"], app_coords, rtol=0, atol=1e-6, equal_nan=True
    )


def test_a_reference_trained_in_the_app_is_reproduced_from_its_bundle(tmp_path):
    """Train on the Train page, project with it; the command runs on the unzipped bundle."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    checked(at.run())
    checked(at.switch_page(state.PAGE_DATA).run())
    checked(button(at, "Load demo dataset").click().run())
    checked(at.switch_page(state.PAGE_TRAIN).run())
    at.number_input(key="train_epochs").set_value(2)
    checked(button(at, "Train reference").click().run())
    checked(button(at, "Use as reference").click().run())
    assert at.session_state[state.REFERENCE_SPEC] == "session:my-reference"
    checked(at.switch_page(state.PAGE_PROJECT).run())
    checked(button(at, "Project cells").click().run())
    checked(at.switch_page(state.PAGE_EXPORT).run())
    commands = [c.value for c in at.code if "--params run.json" in c.value]
    assert len(commands) == 1 and commands[0].endswith("--reference my-reference")
    session = dict(at.session_state.items())
    table, spec = app_results(session)
    assert spec["reference"]["spec"] == "session:my-reference"
    bundle = session[state.TRAINED]["my-reference"].bundle_zip
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        archive.extractall(tmp_path)  # the user unzips the downloaded bundle beside the input
    assert (tmp_path / "my-reference" / "manifest.json").is_file()
    cli = run_command(tmp_path, DEMO_QUERY_PATH, spec, commands[0])
    assert_same(cli, table)


def test_a_bundle_finds_the_same_neighbours_as_the_reference_it_was_saved_from(tmp_path):
    """A bundle's kNN index is rebuilt when it is loaded: the build must be deterministic,
    or the app (the reference trained in memory) and the command (its bundle) disagree at
    ties. A 2-epoch reference on the demo has such ties (found with hnswlib on 2 threads)."""
    import dataclasses

    from scembed_core.io import read_dataset
    from scembed_core.knn import build_cell_index, knn_query
    from scembed_core.project import project
    from scembed_core.reference import load_bundle, save_reference
    from scembed_core.train import TrainingParams, train_reference

    demo = read_dataset(DEMO_QUERY_PATH)
    params = TrainingParams(epochs=2, seed=1, workers=1)
    trained = train_reference(demo, label_key="cell_type", params=params, name="r")
    saved = dataclasses.replace(save_reference(trained, tmp_path / "r"), path=None)
    loaded = load_bundle(tmp_path / "r")
    np.testing.assert_array_equal(saved.cell_space, loaded.cell_space)
    in_memory = project(demo, saved, ev=False).neighbors
    from_bundle = project(demo, loaded, ev=False).neighbors
    np.testing.assert_array_equal(in_memory[0], from_bundle[0])
    space = loaded.cell_space
    first = knn_query(build_cell_index(space), space, 15)[0]
    for _ in range(10):
        np.testing.assert_array_equal(knn_query(build_cell_index(space), space, 15)[0], first)
