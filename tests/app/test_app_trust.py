"""The dataset verdict and the Unknown rule in the app (AppTest on the demo)."""

from __future__ import annotations

from pathlib import Path

from apptest_tools import button, goto, metric
from streamlit.testing.v1 import AppTest

from scembed_app import state

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_verdict_banners_and_unknown_strictness():
    at = goto(AppTest.from_file(APP, default_timeout=300).run(), state.PAGE_DATA)
    button(at, "Load demo dataset").click().run()
    assert not at.exception and not at.error
    assert any(
        "fits the reference" in s.value and "expected accuracy" in s.value for s in at.success
    )
    assert not any("genome build" in w.value for w in at.warning)  # no misleading build blame

    goto(at, state.PAGE_PROJECT)
    assert any("fits the reference" in s.value for s in at.success)
    button(at, "Project cells").click().run()
    assert not at.exception and not at.error

    goto(at, state.PAGE_ANNOTATE)
    n_cells = at.session_state[state.DATASET].adata.n_obs
    unknown = int(metric(at, "Unknown").replace(",", ""))
    assert 0 < unknown <= 0.05 * n_cells  # the demo: cells of known types
    assert any("Unknown" in s.value for s in at.success)  # "... % of cells are Unknown."
    at.slider(key="w_unknown_rate").set_value(0.2).run()
    assert int(metric(at, "Unknown").replace(",", "")) > unknown
    at.slider(key="w_unknown_rate").set_value(0.0).run()
    assert int(metric(at, "Unknown").replace(",", "")) == 0
    assert not at.exception

    goto(at, state.PAGE_REFERENCE)
    assert any("hidden type" in m.value for m in at.markdown)
