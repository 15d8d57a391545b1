"""Clusters: Louvain on the kNN graph of the projected cells, with a resolution search.

The graph is cached per upload digest and reference, so moving the slider re-runs
only Louvain (milliseconds), never the projection.
"""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import cached, figures, guards, results, state, widgets
from scembed_core.errors import ScEmbedError
from scembed_core.labels.vote import UNASSIGNED

RESOLUTION_WIDGET = "w_resolution"
K_WIDGET = "w_n_clusters"

st.title("Clusters")
ref_key, reference = guards.require_reference()
dataset = guards.require_dataset()
run = guards.require_projection(ref_key, dataset)

with st.spinner("Building the kNN graph of the projected cells..."):
    graph = results.knn_graph(run)


def on_slider() -> None:
    """Keep the resolution the slider chose (and forget the last search)."""
    st.session_state[state.RESOLUTION] = float(st.session_state[RESOLUTION_WIDGET])
    st.session_state[state.CLUSTER_SEARCH] = None


def on_find() -> None:
    """Search the resolution that gives the requested number of clusters."""
    target = int(st.session_state[K_WIDGET])
    try:
        search = cached.cached_find_resolution(run.cache_key, state.N_NEIGHBORS, target, graph)
    except ScEmbedError as exc:
        st.session_state[state.CLUSTER_SEARCH] = ("error", str(exc))
        return
    st.session_state[state.RESOLUTION] = float(search.resolution)
    st.session_state[RESOLUTION_WIDGET] = float(np.clip(round(search.resolution, 2), 0.1, 3.0))
    st.session_state[state.RESOLUTION_CURVE] = search.curve
    if search.n_clusters == target:
        message = f"Resolution {search.resolution:.3f} gives {target} clusters."
        st.session_state[state.CLUSTER_SEARCH] = ("success", message)
    else:
        message = (
            f"No resolution up to 3.0 gives exactly {target} clusters; the closest is "
            f"{search.n_clusters} clusters at resolution {search.resolution:.3f}."
        )
        st.session_state[state.CLUSTER_SEARCH] = ("warning", message)


# --- form ----------------------------------------------------------------------------------
if RESOLUTION_WIDGET not in st.session_state:
    st.session_state[RESOLUTION_WIDGET] = float(
        np.clip(round(st.session_state[state.RESOLUTION], 2), 0.1, 3.0)
    )
controls, search_col = st.columns([3, 2])
with controls:
    st.slider(
        "Louvain resolution",
        min_value=0.1,
        max_value=3.0,
        step=0.05,
        key=RESOLUTION_WIDGET,
        on_change=on_slider,
        help="Higher resolution, more and smaller clusters.",
    )
with search_col:
    st.number_input(
        "Find the resolution for k clusters", min_value=1, max_value=100, value=10, key=K_WIDGET
    )
    st.button("Find resolution", on_click=on_find, icon=":material/search:")

outcome = st.session_state[state.CLUSTER_SEARCH]
if outcome is not None:
    kind, message = outcome
    {"success": st.success, "warning": st.warning, "error": st.error}[kind](message)

# --- results -------------------------------------------------------------------------------
resolution = float(st.session_state[state.RESOLUTION])
codes = results.cluster_codes(run, resolution)
cluster = results.clusters(run, resolution, dataset.adata.obs_names)
n_clusters = int(len(np.unique(codes[codes >= 0])))
cols = st.columns(3)
cols[0].metric("Clusters", n_clusters)
cols[1].metric("Resolution", f"{resolution:.3f}")
cols[2].metric("Cells without embedding", f"{int((codes < 0).sum()):,}")

left, right = st.columns(2)
with left:
    with st.spinner("Sweeping resolutions..."):
        curve = cached.cached_resolution_sweep(run.cache_key, state.N_NEIGHBORS, graph)
    if st.session_state[state.RESOLUTION_CURVE] is not None:
        curve = pd.concat([curve, st.session_state[state.RESOLUTION_CURVE]])
        curve = curve.drop_duplicates("resolution")
    widgets.plot(figures.resolution_curve(curve, current=resolution), key="clusters_curve")
with right:
    sizes = cluster[cluster != UNASSIGNED].value_counts()
    widgets.plot(
        figures.count_bar(sizes, title="Cluster sizes", horizontal=False),
        key="clusters_sizes",
    )

has_map = run.projection.umap is not None
if has_map:
    coords = np.asarray(run.projection.umap)
else:
    with st.spinner("Computing a UMAP of the query embedding..."):
        coords = cached.cached_embedding_umap(run.cache_key, run.projection.space)
widgets.map_explorer(run, dataset, reference, coords=coords, on_reference=has_map, key="clusters")

st.page_link(state.PAGE_ANNOTATE, label="Next: annotation", icon=":material/arrow_forward:")
