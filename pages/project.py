"""Project: embed the query cells with the reference's region vectors and map them."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import dataclasses

import numpy as np
import streamlit as st

from scembed_app import (
    cached,
    figures,
    genome,
    guards,
    pipeline,
    results,
    state,
    trust_views,
    widgets,
)
from scembed_app.progress import StageTimer
from scembed_core.errors import ScEmbedError

st.title("Project")
ref_key, reference = guards.require_reference()
dataset = guards.require_dataset()
adata = dataset.adata

# --- form ----------------------------------------------------------------------------------
st.caption(
    f"Project **{adata.n_obs:,} cells** of *{widgets.md(dataset.name)}* onto **{widgets.md(reference.name)}** "
    f"({widgets.md(reference.genome)}). Cells are embedded by averaging the vectors of the reference "
    "regions their peaks overlap (E-projection), then placed on the reference map by UMAP's "
    "transform against the fixed reference cells (EV-projection) and labelled from their "
    "nearest reference cells."
)
if dataset.liftover:
    st.info(genome.describe_liftover(dataset.liftover), icon=":material/swap_horiz:")
trust_views.data_banner(dataset, ref_key, reference)
ev = st.toggle(
    "Place the cells on the reference map (EV-projection)",
    value=reference.can_ev_project,
    disabled=not reference.can_ev_project,
    help="Needs a reference with cells and a map.",
)
clicked = st.button("Project cells", type="primary", icon=":material/play_arrow:")

# --- run: one status line per stage around cached engine calls -----------------------------------
if clicked:
    with st.status("Projecting...", expanded=True) as status:
        stages = StageTimer(status)
        try:
            run = pipeline.project_dataset(dataset, ref_key, reference, ev=ev, stage=stages.stage)
        except ScEmbedError as exc:
            status.update(label="Projection failed", state="error")
            widgets.show_engine_error(exc, hint="Check the Data page's coverage report.")
            state.stop_page()
        run = dataclasses.replace(run, seconds=stages.total, stage_seconds=stages.seconds)
        st.session_state[state.PROJECTION] = run
        status.update(
            label=f"Projected {run.n_projected:,} cells in {run.seconds:.1f} s",
            state="complete",
            expanded=False,
        )

run = st.session_state[state.PROJECTION]
if run is None:
    st.info("Press **Project cells** to embed the query cells and place them on the map.")
    state.stop_page()
run = guards.require_projection(ref_key, dataset)

st.success(
    f"Projected {run.n_projected:,} cells in {run.seconds:.1f} s"
    + (
        f" ({run.n_cells - run.n_projected:,} cells had no reference region)."
        if run.n_projected < run.n_cells
        else "."
    ),
    icon=":material/check_circle:",
)

# --- views (lazy tabs: only the open one is computed) ---------------------------------------
has_map = run.projection.umap is not None
placed = run.projection.map_transform
animated = has_map and placed is not None and placed.frames is not None
names = ["Reference map" if has_map else "Query map", "Per-cluster panels", "Embedding layout"]
tabs = st.tabs(
    names + (["Watch it project"] if animated else []), key="project_view", on_change="rerun"
)
map_tab, panels_tab, umap_tab = tabs[:3]


def query_coords() -> np.ndarray:
    """Coordinates to draw: the reference map if EV-projected, else the query's own UMAP."""
    if has_map:
        return np.asarray(run.projection.umap)
    with st.spinner("Computing a UMAP of the query embedding..."):
        return cached.cached_embedding_umap(run.cache_key, run.projection.space)


with map_tab:
    if map_tab.open:
        widgets.map_explorer(
            run, dataset, reference, coords=query_coords(), on_reference=has_map, key="project"
        )
with panels_tab:
    if panels_tab.open:
        ref_coords = np.asarray(reference.cells.obsm["X_umap"]) if has_map else None
        fig = figures.cluster_panels(
            query_coords(),
            results.current_clusters(run, dataset),
            reference_coords=ref_coords,
            colors=results.chart_colors(reference),
        )
        st.caption("One panel per Louvain cluster over the reference map (grey).")
        widgets.plot(fig, key="project_panels")
with umap_tab:
    if umap_tab.open:
        st.caption(
            "The query's own structure, without the reference: the spectral layout "
            "(Laplacian eigenmap) of the kNN graph its clusters come from, i.e. the two "
            "leading eigenvectors UMAP starts its optimisation from. It needs no fit, so it "
            "is drawn in a fraction of a second and is the same on every run."
        )
        coords = cached.cached_embedding_layout(
            run.cache_key, state.N_NEIGHBORS, results.knn_graph(run)
        )
        widgets.map_explorer(
            run, dataset, reference, coords=coords, on_reference=False, key="embedding"
        )

if animated:
    with tabs[3]:
        if tabs[3].open:
            shown = len(placed.sample)
            st.caption(
                f"{shown:,} query cells"
                + (f" (a random sample of {run.n_projected:,})" if shown < run.n_projected else "")
                + f" moving from their start (the weighted mean of their nearest reference "
                f"cells) to their place after {placed.n_epochs} epochs of UMAP's optimisation "
                "against the fixed reference. Press Play, or drag the slider."
            )
            fig = figures.projection_animation(
                placed.frames, placed.frame_epochs, reference_coords=reference.map_coords
            )
            widgets.plot(fig, key="project_animation")

st.page_link(state.PAGE_CLUSTERS, label="Next: tune the clusters", icon=":material/arrow_forward:")
