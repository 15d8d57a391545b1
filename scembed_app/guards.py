"""The guards every page opens with: the reference, the dataset, the projection, or stop.

Each returns what the page needs or explains what is missing (with a link to the page that
provides it) and ends the page through :func:`scembed_app.state.stop_page`. They sit above
the cached engine calls and the widgets, which is why they are not in
:mod:`scembed_app.state` (the session-state keys, which import nothing of the kit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st

from scembed_app.cached import active_reference
from scembed_app.state import (
    DATASET,
    PAGE_DATA,
    PAGE_PROJECT,
    PAGE_REFERENCE,
    PROJECTION,
    ProjectionRun,
    stop_page,
)
from scembed_app.widgets import show_engine_error
from scembed_core.errors import ScEmbedError

if TYPE_CHECKING:
    from scembed_app.uploads import LoadedDataset

__all__ = ["require_reference", "require_dataset", "require_projection"]


def require_reference() -> tuple[str, Any]:
    """The active reference as ``(cache key, Reference)``, or an explanation and stop."""
    try:
        return active_reference()
    except ScEmbedError as exc:
        show_engine_error(exc, hint="Choose another reference on the Reference page.")
        st.page_link(PAGE_REFERENCE, label="Go to Reference", icon=":material/hub:")
        stop_page()
    raise AssertionError("unreachable")  # pragma: no cover


def require_dataset() -> LoadedDataset:
    """The uploaded query dataset, or a pointer to the Data page and stop."""
    dataset = st.session_state.get(DATASET)
    if dataset is None:
        st.info("No query dataset yet. Upload your scATAC-seq data or load the demo dataset.")
        st.page_link(PAGE_DATA, label="Go to Data", icon=":material/upload_file:")
        stop_page()
    return dataset


def require_projection(reference_key: str, dataset: LoadedDataset) -> ProjectionRun:
    """The projection of the current dataset onto the current reference, or stop."""
    run = st.session_state.get(PROJECTION)
    if run is None:
        st.info("The cells are not projected yet. Project them onto the reference first.")
        st.page_link(PAGE_PROJECT, label="Go to Project", icon=":material/scatter_plot:")
        stop_page()
    if run.dataset_digest != dataset.digest or run.reference_key != reference_key:
        st.info(
            "The dataset or the reference changed since the last projection. "
            "Project again to update the clusters and labels."
        )
        st.page_link(PAGE_PROJECT, label="Go to Project", icon=":material/scatter_plot:")
        stop_page()
    return run
