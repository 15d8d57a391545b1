"""Atlas results: open a finished out-of-core (.zarr) projection and draw a sample of it."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

from pathlib import Path

import pandas as pd
import streamlit as st

from scembed_app import deployment, figures, guards, results, state, widgets
from scembed_core.errors import ScEmbedError

MAX_POINTS = 50_000

st.title("Atlas results")
st.caption(
    "Datasets too large for an upload are projected on the command line with Dask "
    "(`python -m scembed_core project BIG.h5ad --reference default --out BIG.zarr --dask`). "
    f"Open the finished `.zarr` here: at most {MAX_POINTS:,} cells are read and drawn, never "
    "the whole store."
)

if deployment.is_hosted():
    st.info(
        "Atlas results are read from the server's disk, which this public deployment does not "
        "open. Run the command above on your own machine and open the result in a local copy "
        "of the app (`make run`).",
        icon=":material/lock:",
    )
    state.stop_page()

with st.form("atlas_form"):
    path = st.text_input("Result store on the server", placeholder="/data/BIG.zarr")
    submitted = st.form_submit_button("Open result", icon=":material/folder_open:")
if submitted and path.strip():
    st.session_state["atlas_path"] = path.strip()

chosen = st.session_state.get("atlas_path")
if not chosen:
    st.info("No result opened yet: run the command above, then give the path of its `.zarr`.")
    state.stop_page()


@st.cache_data(show_spinner="Reading a sample of the result...", max_entries=4, ttl=3600)
def sample(store: str, max_points: int) -> tuple[pd.DataFrame, int]:
    """A random sample of the store's cells and the store's total number of cells."""
    import zarr

    from scembed_core.atlas import open_result

    frame = open_result(store, max_points=max_points)
    total = int(zarr.open_group(store, mode="r")["obsm/X_scembed"].shape[0])
    return frame, total


if not Path(chosen).is_dir():
    st.error(f"No result store at {widgets.md(chosen)}. Give the `--out` folder of the run.")
    state.stop_page()
try:
    frame, total = sample(chosen, MAX_POINTS)
except (ScEmbedError, KeyError, OSError, ValueError) as exc:
    widgets.show_engine_error(exc, hint="Is this the `.zarr` written by `project --dask`?")
    state.stop_page()

left, right = st.columns(2)
left.metric("Cells in the store", f"{total:,}")
right.metric("Cells drawn", f"{len(frame):,}")
if not {"umap_1", "umap_2"} <= set(frame.columns):
    st.warning("This result has no reference-map coordinates (it was run with `--no-ev`).")
    st.dataframe(frame.head(1000))
    state.stop_page()

_, reference = guards.require_reference()
colour_options = [c for c in frame.columns if c.startswith("scembed_") and frame[c].nunique() > 1]
colour = st.selectbox("Colour by", colour_options or list(frame.columns[:1]))
hover = pd.DataFrame({"cell": frame.index.astype(str), colour: frame[colour].astype(str)})
reference_coords = (
    reference.cells.obsm["X_umap"]
    if reference.cells is not None and "X_umap" in reference.cells.obsm
    else None
)
fig = figures.query_map(
    frame[["umap_1", "umap_2"]].to_numpy(),
    frame[colour],
    hover,
    reference_coords=reference_coords,
    title=f"{len(frame):,} of {total:,} cells on the reference map",
    colors=results.chart_colors(reference),
)
widgets.plot(fig, key="atlas_map")
