"""The reference's map and labels before the reference itself: what the landing page draws first.

A fresh server (every wake-up of a hosted app) would otherwise import anndata, h5py, scipy
and numba and load the region vectors, cells and kNN index before the landing page draws
anything. :func:`quick_summary` reads the bundle's compact map instead
(:mod:`scembed_core.compact`: numpy memory maps, milliseconds), so the page draws its metrics
and charts first and loads the full reference underneath. ``None`` (use the full reference)
for anything but a bundle folder with a compact map: references trained in the tab, hub
models, older bundles.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import streamlit as st

from scembed_app import state
from scembed_core._paths import DEFAULT_REFERENCE_DIR
from scembed_core.errors import ScEmbedError


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_summary(folder: str) -> Any:
    """The compact view of the bundle in ``folder`` (shared, read-only), or ``None``."""
    from scembed_core.compact import read_summary

    return read_summary(Path(folder))


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_label_model(folder: str) -> Any:
    """The label classifier of the bundle in ``folder`` (shared, read-only), or ``None``."""
    summary = cached_summary(folder)
    return None if summary is None else summary.read_label_model()


def quick_summary(spec: str) -> Any:
    """The compact view of reference ``spec`` when one can be read without loading it.

    Only the built-in reference qualifies (a folder a visitor names is loaded and verified
    in full before anything of it is drawn). A compact map that fails its checksum gives
    ``None`` too: the full load then explains what is wrong.
    """
    if spec != "default":
        return None
    try:
        return cached_summary(str(DEFAULT_REFERENCE_DIR))
    except ScEmbedError:
        return None


_CONTEXT_LOGGER = "streamlit.runtime.scriptrunner_utils.script_run_context"


class _WarmThreads(logging.Filter):
    """Drop Streamlit's "missing ScriptRunContext" warning for the warm-up threads.

    They call cached functions outside any session on purpose (to fill the shared cache)
    and draw nothing, so the warning (and the spinner it stands for) does not apply.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName.startswith("scembed-warm")


@st.cache_resource(show_spinner=False)
def start_projection_warmup() -> threading.Thread | None:
    """Once per server process: load the built-in reference and warm the projection path.

    Called by the router after the first page is drawn; the thread waits
    :data:`~scembed_app.state.WARMUP_DELAY_S`, then loads the full built-in reference into
    the shared cache (:func:`scembed_app.cached.cached_reference`: the landing page draws
    from the compact map and never loads it) and runs the first projection's path on the
    whole demo, under a new tab's settings (:func:`scembed_app.pipeline.warm_demo`:
    the kernels come from numba's disk cache, igraph is imported, the reference's label
    statistics are computed, and every result the demo's click reads is cached) before
    anyone clicks "Project cells".
    Best effort: a failure changes nothing but the first click's time. Nothing waits for it.
    """
    from scembed_app import cached, memory, pipeline

    logger = logging.getLogger(_CONTEXT_LOGGER)
    if not any(isinstance(f, _WarmThreads) for f in logger.filters):
        logger.addFilter(_WarmThreads())

    def warm() -> None:
        time.sleep(state.WARMUP_DELAY_S)
        with contextlib.suppress(Exception):  # a warm-up must never break the server
            reference = cached.cached_reference("default", False)
            # the demo projected as a new tab would: its "Project cells" only draws
            pipeline.warm_demo(cached.reference_key("default", reference), reference)
        # What is loaded now (the libraries, the built-in reference) lives as long as the
        # server: frozen, Streamlit's collection after every run no longer walks it
        # (scembed_app.memory explains; frozen cyclic garbage waits for the next refreeze).
        memory.refreeze()
        memory.keep_refreezing()

    thread = threading.Thread(target=warm, name="scembed-warm-projection", daemon=True)
    thread.start()
    return thread
