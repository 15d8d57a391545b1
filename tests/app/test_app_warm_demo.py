"""The server's warm-up projects the built-in demo; the first click on it only reads the cache.

``scembed_app.pipeline.project_dataset`` is the one implementation of "Project cells": the
page runs it on a click, the warm-up thread (:func:`scembed_app.quickref.start_projection_warmup`)
runs it on the demo under a new tab's settings. Counted with ``scembed_app.cached.COMPUTED``
(each projection and label function's body, i.e. each cache miss), as the workspace tests do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apptest_tools import button, checked, goto
from streamlit.testing.v1 import AppTest

from scembed_app import cached, pipeline, quickref, state

pytestmark = pytest.mark.xdist_group("app")

APP = str(Path(__file__).resolve().parents[2] / "app.py")
COUNTED = ("e_project", "ev_project", "transfer")


def test_warm_demo_fills_what_the_demo_click_reads():
    quickref.start_projection_warmup().join(timeout=300)  # this process's own warm-up done
    for function in (
        cached.cached_e_project,
        cached.cached_ev_project,
        cached.cached_transfer,
        cached.cached_louvain,
    ):
        function.clear()  # from here on every result is computed, counted, once
    reference = cached.cached_reference("default", False)
    before = dict(cached.COMPUTED)
    warmed = pipeline.warm_demo(cached.reference_key("default", reference), reference)
    for name in COUNTED:
        assert cached.COMPUTED[name] == before.get(name, 0) + 1, f"the warm-up skipped {name}"
    assert warmed.n_cells == 1550 and warmed.projection.umap is not None

    at = goto(checked(AppTest.from_file(APP, default_timeout=180).run()), state.PAGE_DATA)
    checked(button(at, "Load demo dataset").click().run())
    goto(at, state.PAGE_PROJECT)
    clicked = dict(cached.COMPUTED)
    checked(button(at, "Project cells").click().run())
    for name in COUNTED:
        assert cached.COMPUTED[name] == clicked[name], f"the click recomputed {name}"
    run = at.session_state[state.PROJECTION]
    assert run.cache_key == warmed.cache_key
    assert run.n_projected == warmed.n_projected
    np.testing.assert_array_equal(run.projection.umap, warmed.projection.umap)
    assert any(s.value.startswith("Projected 1,550 cells") for s in at.success)
