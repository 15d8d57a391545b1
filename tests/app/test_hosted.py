"""Hosted mode (``SCEMBED_HOSTED``): what a public deployment hides, tested against local mode.

The same AppTest flows run in both modes and assert the real widgets: the "Folder on disk"
source, the Atlas results path box and the trust box exist locally and are gone when hosted;
engine messages keep their server paths locally and lose them when hosted. The switch is read
from the environment and from Streamlit secrets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from scembed_app import deployment, state

pytestmark = pytest.mark.xdist_group("app")  # shares the built-in reference with test_app.py

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 180
SECRET_DIR = "/srv/private-models/do-not-show"


@pytest.fixture(params=["local", "hosted-env", "hosted-secrets"])
def mode(request, monkeypatch) -> str:
    """Run the test once per mode; the server operator allows trust in every one."""
    monkeypatch.setenv("SCEMBED_ALLOW_TRUST", "1")
    monkeypatch.delenv(deployment.HOSTED_SWITCH, raising=False)
    if request.param == "hosted-env":
        monkeypatch.setenv(deployment.HOSTED_SWITCH, "1")
    return request.param


def app(mode: str, page: str | None = None, **session) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if mode == "hosted-secrets":
        at.secrets[deployment.HOSTED_SWITCH] = "true"
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def hosted(mode: str) -> bool:
    return mode != "local"


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_reference_sources(mode):
    at = app(mode)
    source = at.radio(key="reference_source")
    if hosted(mode):
        assert source.options == ["Built-in default", "Trained in this session", "Hugging Face hub"]
        return
    assert "Folder on disk" in source.options
    source.set_value("folder").run()
    assert [t.label for t in at.text_input] == ["Bundle folder on the server"]


def test_trust_box(mode):
    at = app(mode)
    at.radio(key="reference_source").set_value("hub").run()
    labels = [c.label for c in at.checkbox]
    if hosted(mode):
        assert "I trust this source" not in labels
        assert any("public deployment" in text for text in texts(at.caption))
    else:
        assert "I trust this source" in labels


def test_atlas_results_path_box(mode):
    at = app(mode, state.PAGE_ATLAS)
    assert at.title[0].value == "Atlas results"
    labels = [t.label for t in at.text_input]
    if hosted(mode):
        assert labels == []
        assert any("public deployment" in text for text in texts(at.info))
    else:
        assert labels == ["Result store on the server"]


def test_server_paths_in_engine_messages(mode):
    # the operator's SCEMBED_REFERENCE (or a stale spec) names a folder that is not there
    at = app(mode, **{state.REFERENCE_SPEC: SECRET_DIR})
    errors = texts(at.error)
    assert errors, "the missing reference folder is reported with st.error"
    at.switch_page(state.PAGE_ABOUT).run()
    warnings = texts(at.warning)  # About: "The current reference could not be loaded: ..."
    assert warnings
    shown = " ".join(errors + warnings)
    if hosted(mode):
        assert "/srv" not in shown and "private-models" not in shown, shown
        assert "do-not-show" in errors[0]  # the message still names what is missing
    else:
        assert SECRET_DIR in errors[0] and SECRET_DIR in warnings[0]


def test_hub_box_does_not_open_folders_when_hosted(mode, tmp_path):
    at = app(mode)
    at.radio(key="reference_source").set_value("hub").run()
    box = next(t for t in at.text_input if t.label.startswith("Or any model"))
    box.set_value(str(tmp_path)).run()
    next(b for b in at.button if b.label == "Load from the hub").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert errors, "an empty folder is not a reference, and hosted mode refuses folders"
    assert at.session_state[state.REFERENCE_SPEC] == "default"
    if hosted(mode):
        assert "hf:owner/name" in errors[0]
        assert str(tmp_path) not in " ".join(errors)


# --- the switch itself ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True), ("typo", True)]
    + [("0", False), ("false", False), ("off", False), ("no", False), ("", False)],
)
def test_switch_values(monkeypatch, value, expected):
    monkeypatch.setenv(deployment.HOSTED_SWITCH, value)
    assert deployment.is_hosted() is expected


def test_no_switch_and_no_secrets_file_is_local(monkeypatch):
    monkeypatch.delenv(deployment.HOSTED_SWITCH, raising=False)
    assert not Path(".streamlit/secrets.toml").exists()
    assert deployment.is_hosted() is False  # and no error for the missing secrets file


def test_redact_paths_keeps_names_specs_and_urls():
    text = (
        "config.yaml in /root/.cache/huggingface/hub/models--a--b/snapshots/ab12 is not valid; "
        "hf:databio/r2v-x@main, https://huggingface.co/databio, 1/2 cells, file '/tmp/t/x.h5ad'"
    )
    assert deployment.redact_paths(text) == (
        "config.yaml in ab12 is not valid; "
        "hf:databio/r2v-x@main, https://huggingface.co/databio, 1/2 cells, file 'x.h5ad'"
    )
