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

from pathlib import Path
from typing import Any

import streamlit as st

from scembed_core._paths import DEFAULT_REFERENCE_DIR
from scembed_core.errors import ScEmbedError


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_summary(folder: str) -> Any:
    """The compact view of the bundle in ``folder`` (shared, read-only), or ``None``."""
    from scembed_core.compact import read_summary

    return read_summary(Path(folder))


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
