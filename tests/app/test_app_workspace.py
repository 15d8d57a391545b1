"""Workspaces in the app (AppTest): restore without recompute, read-only links, forks, bad ids.

Each AppTest is a new session, as a browser reload or another browser is. The workspace
root is a temporary folder (``SCEMBED_WORKSPACES``). "Not recomputed" is checked by
counting: ``scembed_app.cached.COMPUTED`` counts the runs of the projection and label
functions' bodies, and their caches are cleared before the restore, so any recompute would
show. The real-browser version of these flows is ``tests/app/test_browser_workspace.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_tools import button, checked, goto, metric
from streamlit.testing.v1 import AppTest

from scembed_app import cached, quickref, state
from scembed_app.workspace import WorkspaceStore, is_valid_id

pytestmark = pytest.mark.xdist_group("app")

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One workspace root for the module (set before any app session starts)."""
    folder = tmp_path_factory.mktemp("workspaces")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCEMBED_WORKSPACES", str(folder))
        yield folder


def session(ws_id: str | None = None) -> AppTest:
    """A new browser session, opening ``?ws=<ws_id>`` when given."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if ws_id is not None:
        at.query_params["ws"] = ws_id
    return checked(at.run())


def sidebar_text(at: AppTest) -> str:
    parts = [m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption]
    parts += [i.value for i in at.sidebar.info] + [c.value for c in at.sidebar.code]
    return " ".join(parts)


@pytest.fixture(scope="module")
def analysis(root):
    """The demo projected, at resolution 2.0, min. probability 0.3, Unknown strictness 0.12,
    left on Clusters."""
    at = goto(session(), state.PAGE_DATA)
    assert "ws" not in at.query_params, "no workspace before the first dataset"
    checked(button(at, "Load demo dataset").click().run())
    ws_id = at.query_params["ws"]
    assert is_valid_id(ws_id)
    goto(at, state.PAGE_PROJECT)
    checked(button(at, "Project cells").click().run())
    assert at.query_params["ws"] == ws_id, "the same analysis, re-set after navigation"
    goto(at, state.PAGE_ANNOTATE)
    checked(at.slider(key="w_min_confidence").set_value(0.3).run())
    checked(at.slider(key="w_unknown_rate").set_value(0.12).run())
    goto(at, state.PAGE_CLUSTERS)
    checked(at.slider(key="w_resolution").set_value(2.0).run())
    assert at.query_params["ws"] == ws_id
    return at, ws_id


def test_the_first_dataset_creates_an_owned_workspace(root, analysis):
    at, ws_id = analysis
    store = WorkspaceStore(root)
    assert ws_id in store.ids()
    workspace = store.open(ws_id)
    saved = workspace.read_state()
    assert saved["page"] == state.PAGE_CLUSTERS
    assert saved["settings"][state.RESOLUTION] == 2.0
    assert saved["settings"][state.MIN_CONFIDENCE] == 0.3
    assert saved["settings"][state.UNKNOWN_RATE] == 0.12
    assert saved["reference"]["spec"] == "default"
    assert workspace.read_results()["key"]["clusters"]["resolution"] == 2.0
    text = sidebar_text(at)
    assert "Copy link to this analysis" in text and f"?ws={ws_id}" in text
    assert "read-only" not in text, "the tab that created it owns it"


def test_restore_in_a_new_session_recomputes_nothing(root, analysis):
    at, ws_id = analysis
    run = at.session_state[state.PROJECTION]
    quickref.start_projection_warmup().join(timeout=300)  # it projects the demo too: done first
    for function in (cached.cached_e_project, cached.cached_ev_project, cached.cached_transfer):
        function.clear()  # a recompute would now be a cache miss, counted
    before = dict(cached.COMPUTED)

    again = session(ws_id)  # a reload: the root URL with the id
    assert again.title[0].value == "Clusters", "back on the page it was on"
    restored = again.session_state[state.PROJECTION]
    assert restored is not run and restored.cache_key == run.cache_key
    np.testing.assert_array_equal(restored.projection.embedding, run.projection.embedding)
    np.testing.assert_array_equal(restored.projection.umap, run.projection.umap)
    np.testing.assert_array_equal(restored.projection.neighbors[0], run.projection.neighbors[0])
    assert metric(again, "Resolution") == "2.000"
    assert again.slider(key="w_resolution").value == 2.0
    assert again.session_state[state.MIN_CONFIDENCE] == 0.3
    assert again.session_state[state.DATASET].digest == at.session_state[state.DATASET].digest

    goto(again, state.PAGE_ANNOTATE)  # labels at the stored thresholds, from the workspace
    assert again.slider(key="w_min_confidence").value == 0.3
    assert again.slider(key="w_unknown_rate").value == 0.12
    for name in ("e_project", "ev_project", "transfer"):
        assert cached.COMPUTED[name] == before.get(name, 0), f"{name} was recomputed"
    stored = WorkspaceStore(root).open(ws_id).read_results()
    shown = again.session_state[state.STORED_RESULTS]["labels"]
    pd.testing.assert_frame_equal(
        shown.reset_index(drop=True), stored["labels"].reset_index(drop=True)
    )
    assert "read-only" in sidebar_text(again), "a session that did not create it"


def test_a_change_on_a_shared_link_forks(root, analysis):
    _, ws_id = analysis
    store = WorkspaceStore(root)
    files_before = sorted(p.name for p in (root / ws_id).iterdir())
    viewer = session(ws_id)
    for page in (state.PAGE_PROJECT, state.PAGE_ANNOTATE, state.PAGE_EXPORT, state.PAGE_DATA):
        goto(viewer, page)  # looking around is not a change (pages fill in their defaults)
    goto(viewer, state.PAGE_CLUSTERS)
    assert viewer.query_params["ws"] == ws_id
    assert sorted(p.name for p in (root / ws_id).iterdir()) == files_before

    checked(viewer.slider(key="w_resolution").set_value(0.5).run())
    fork_id = viewer.query_params["ws"]
    assert is_valid_id(fork_id) and fork_id != ws_id
    assert "new analysis" in sidebar_text(viewer) and "read-only" not in sidebar_text(viewer)
    assert store.open(fork_id).read_state()["settings"][state.RESOLUTION] == 0.5
    assert store.open(ws_id).read_state()["settings"][state.RESOLUTION] == 2.0
    assert sorted(p.name for p in (root / ws_id).iterdir()) == files_before, "untouched"

    checked(viewer.slider(key="w_resolution").set_value(0.8).run())  # now its own: no new fork
    assert viewer.query_params["ws"] == fork_id
    assert store.open(fork_id).read_state()["settings"][state.RESOLUTION] == 0.8


def problem_of(ws_id: str) -> AppTest:
    """A new session opening ``?ws=<ws_id>``: one clear error, no page, nothing restored."""
    at = session(ws_id)
    assert len(at.error) == 1 and "Traceback" not in at.error[0].value
    assert [b.label for b in at.button] == ["Start a new analysis"]
    assert at.session_state[state.DATASET] is None
    assert at.query_params["ws"] == ws_id, "the link stays as it was"
    return at


def test_malformed_unknown_and_expired_links_get_a_clear_page(root, analysis):
    _, ws_id = analysis
    at = problem_of("../../etc/passwd")
    assert at.title[0].value == "This link is not valid"
    assert "malformed" in at.error[0].value
    tampered = ("0" if ws_id[0] != "0" else "1") + ws_id[1:]
    at = problem_of(tampered)
    assert at.title[0].value == "Analysis not found"

    # a workspace last written eight days ago (the store is already open: no start-up cleanup)
    old = WorkspaceStore(root, clock=lambda: time.time() - 8 * 86400).create()
    old.write_state({"page": state.PAGE_DATA})
    at = problem_of(old.id)
    assert at.title[0].value == "This analysis has expired"
    assert "7 days" in at.error[0].value

    checked(button(at, "Start a new analysis").click().run())
    assert "ws" not in at.query_params
    assert at.title[0].value == "Data", "a fresh start on the Data page"
    assert at.session_state[state.DATASET] is None


def test_a_changed_reference_is_explained_not_reused(root, analysis):
    _, ws_id = analysis
    store = WorkspaceStore(root)
    copy = store.fork(ws_id)
    doc = copy.read_state()
    doc["reference"] = {**doc["reference"], "fingerprint": "0" * 64}
    copy.write_state(doc)
    at = session(copy.id)
    assert at.session_state[state.PROJECTION] is None
    assert at.session_state[state.DATASET] is not None, "the dataset is restored"
    assert at.session_state[state.RESOLUTION] == 2.0, "and the settings"
    assert "has changed since this analysis was saved" in sidebar_text(at)


def test_export_offers_run_json_and_the_command(analysis):
    from scembed_app import reproduce
    from scembed_core.reference import DEMO_QUERY_PATH
    from scembed_core.runspec import file_sha256, read_run_spec

    at, _ = analysis
    goto(at, state.PAGE_EXPORT)
    assert "run.json" in [b.label for b in at.get("download_button")]
    commands = [c.value for c in at.code if "scembed_core project" in c.value]
    name = Path(DEMO_QUERY_PATH).name
    assert commands == [
        f"python -m scembed_core project {name} --params run.json --out {name.split('.')[0]}"
        "_scembed.h5ad"
    ]
    dataset = at.session_state[state.DATASET]
    reference = cached.cached_reference("default", False)  # the one the sessions use
    params = reproduce.run_params(
        ev=True,
        resolution=at.session_state[state.RESOLUTION],
        label_key=reference.default_label_key,
        label_method="classifier",
        min_confidence=at.session_state[state.MIN_CONFIDENCE],
        max_mapping_distance=None,
        liftover=True,
    )
    spec = read_run_spec(
        reproduce.run_spec(
            spec="default", reference=reference, dataset=dataset, params=params, hosted=False
        )
    )
    assert spec.input["sha256"] == file_sha256(DEMO_QUERY_PATH)
    assert spec.params["resolution"] == 2.0 and spec.params["min_confidence"] == 0.3
    assert spec.reference["fingerprint"] == reference.fingerprint


def test_a_trained_reference_comes_back_from_its_stored_bundle(root):
    at = goto(session(), state.PAGE_DATA)
    checked(button(at, "Load demo dataset").click().run())
    goto(at, state.PAGE_TRAIN)
    at.number_input(key="train_epochs").set_value(1)
    checked(button(at, "Train reference").click().run())
    checked(button(at, "Use as reference").click().run())
    goto(at, state.PAGE_PROJECT)
    checked(at.toggle[0].set_value(False).run())  # E-projection only: quick
    checked(button(at, "Project cells").click().run())
    run = at.session_state[state.PROJECTION]
    assert run is not None and run.reference_key.startswith("trained:my-reference:")
    ws_id = at.query_params["ws"]

    again = session(ws_id)
    assert again.title[0].value == "Project"
    trained = again.session_state[state.TRAINED]["my-reference"]
    original = at.session_state[state.TRAINED]["my-reference"]
    assert trained.reference.fingerprint == original.reference.fingerprint
    assert trained.bundle_zip == original.bundle_zip
    restored = again.session_state[state.PROJECTION]
    assert restored is not None and restored.reference_key == run.reference_key
    np.testing.assert_array_equal(restored.projection.embedding, run.projection.embedding)
    assert not again.error, [e.value for e in again.error]


def test_the_link_is_offered_in_hosted_mode_too(root, monkeypatch):
    monkeypatch.setenv("SCEMBED_HOSTED", "1")
    at = goto(session(), state.PAGE_DATA)
    checked(button(at, "Load demo dataset").click().run())
    ws_id = at.query_params["ws"]
    links = [m.value for m in at.sidebar.markdown if "?ws=" in m.value]
    assert links == [f"`/data?ws={ws_id}`"]  # + the browser's URL
    assert "Copy link to this analysis" in sidebar_text(at)


def test_an_analysis_over_the_budget_is_kept_in_the_tab_and_said_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SCEMBED_WORKSPACES", str(tmp_path))
    monkeypatch.setenv("SCEMBED_WORKSPACE_MAX_MB", "1")  # the demo's h5ad alone is ~3 MB
    at = goto(session(), state.PAGE_DATA)
    checked(button(at, "Load demo dataset").click().run())
    assert "could not be saved" in sidebar_text(at) and "1 MB" in sidebar_text(at)
    assert at.session_state[state.DATASET] is not None, "the tab keeps its dataset"
    ws_id = at.query_params["ws"]
    assert not WorkspaceStore(tmp_path).open(ws_id).has_dataset()
    goto(at, state.PAGE_PROJECT)  # the large write is not retried on every run
    assert at.session_state[state.SAVED]["dataset"] == at.session_state[state.DATASET].digest
    assert not WorkspaceStore(tmp_path).open(ws_id).has_dataset()
