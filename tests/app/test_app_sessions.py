"""Sessions of one server never see each other's results (issue 11, point 1).

``st.cache_data`` is global to the server process; two AppTest sessions in one process
share it exactly as two browser tabs on a hosted app do.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pytest
from streamlit.testing.v1 import AppTest

from scembed_app import state
from scembed_core.reference import DEMO_QUERY_PATH

pytestmark = pytest.mark.xdist_group("app")

APP = str(Path(__file__).resolve().parents[2] / "app.py")
GENIML_TINY = str(Path(__file__).parents[1] / "data" / "geniml_tiny")
TIMEOUT = 240


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def _session_on_region_model() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[state.REFERENCE_SPEC] = GENIML_TINY
    at.run()
    return _ok(at)


def _train_and_project(at: AppTest) -> set[str]:
    """Build a reference from the session's dataset, use it, project the demo: its labels."""
    at.switch_page(state.PAGE_TRAIN).run()
    _ok(at)
    assert at.radio(key="train_mode").value == "Use its region vectors"
    _button(at, "Train reference").click().run()
    _ok(at)
    _button(at, "Use as reference").click().run()
    _ok(at)
    at.switch_page(state.PAGE_DATA).run()
    _button(at, "Load demo dataset").click().run()
    at.switch_page(state.PAGE_PROJECT).run()
    _button(at, "Project cells").click().run()
    _ok(at)
    at.switch_page(state.PAGE_ANNOTATE).run()
    _ok(at)
    table = at.dataframe[0].value
    return set(table["label"].astype(str)) - {"Unassigned"}


def test_two_sessions_training_one_name_on_one_model_see_only_their_own_labels(tmp_path):
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    renamed = demo.copy()
    renamed.obs["cell_type"] = "B-" + renamed.obs["cell_type"].astype(str)
    renamed.write_h5ad(tmp_path / "labelled.h5ad")

    a = _session_on_region_model()
    a.switch_page(state.PAGE_DATA).run()
    _button(a, "Load demo dataset").click().run()
    _ok(a)

    b = _session_on_region_model()
    b.switch_page(state.PAGE_DATA).run()
    b.file_uploader(key="upload_files").set_value(
        [("labelled.h5ad", (tmp_path / "labelled.h5ad").read_bytes(), "application/octet-stream")]
    )
    b.run()
    _ok(b)
    assert b.session_state[state.DATASET].adata.obs["cell_type"].str.startswith("B-").all()

    labels_a = _train_and_project(a)  # both under the default name "my-reference"
    labels_b = _train_and_project(b)
    assert labels_a and labels_b
    assert not any(label.startswith("B-") for label in labels_a), labels_a
    assert all(label.startswith("B-") for label in labels_b), labels_b
    key_a = a.session_state[state.PROJECTION].reference_key
    key_b = b.session_state[state.PROJECTION].reference_key
    assert key_a != key_b
