"""Data: upload a query dataset (or the demo) and check its coverage before projecting."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import numpy as np
import streamlit as st

from scembed_app import (
    cached,
    deployment,
    figures,
    genome,
    guards,
    qc_views,
    results,
    state,
    trust_views,
    uploads,
    widgets,
)
from scembed_core.errors import ScEmbedError

st.title("Data")
ref_key, reference = guards.require_reference()

LIMIT_MB = deployment.upload_limit_mb()
UPLOADER = "upload_files"
FORMATS = f"""
**Accepted formats** (up to {LIMIT_MB:,} MB per upload):
- `.h5ad` AnnData, cells x peaks, with `chr`/`start`/`end` in `var` or peak names like `chr1:100-600`
- 10x Genomics `.h5` (filtered peak matrix)
- 10x `matrix.mtx(.gz)` + `barcodes.tsv(.gz)` + `peaks.bed(.gz)`: the three files together,
  or one `.zip` / `.tar.gz` holding them
- `.csv` cells x peaks (first column: cell names; header: peak names)
- `fragments.tsv.gz` (no peak calling: each cell's fragments are counted over the reference's
  regions, so the "peaks" are the reference universe)

Pickles (`.pkl`, `.joblib`) are refused: loading them could run code.
"""

# --- form: upload or demo --------------------------------------------------------------------
upload_col, demo_col = st.columns([3, 1])
with upload_col:
    files = st.file_uploader(
        "Upload scATAC-seq data",
        accept_multiple_files=True,
        key=UPLOADER,
        max_upload_size=LIMIT_MB,
        on_change=widgets.take_upload,  # stored and released before this page runs
        args=(UPLOADER, LIMIT_MB * 2**20),
        help="Select several files at once for a 10x matrix.mtx + barcodes + peaks triple.",
    )
    if deployment.is_hosted():
        st.caption(
            f"Up to {LIMIT_MB:,} MB per upload on this public server: what its memory "
            "(2.7 GB) was measured to hold for one visitor. For larger datasets run the "
            "command line (`python -m scembed_core project`) or the app on your own machine."
        )
    with st.expander("Accepted formats", icon=":material/help:"):
        st.markdown(FORMATS)
with demo_col:
    st.write("No data at hand?")
    demo_clicked = st.button("Load demo dataset", icon=":material/science:", type="primary")

if demo_clicked:
    try:
        with st.spinner("Reading the demo dataset..."):
            state.set_dataset(cached.cached_demo_dataset())
    except ScEmbedError as exc:
        widgets.show_engine_error(exc, hint="The demo data is missing; run `make reference`.")

spool = st.session_state[state.PENDING_UPLOAD]  # stored by the uploader's callback
if spool is not None:
    st.session_state[state.PENDING_UPLOAD] = None
    keep = False
    try:
        with st.spinner(f"Reading {', '.join(spool.names)}..."):
            loaded = cached.read_upload(spool, reference)  # removes the folder
        state.set_dataset(loaded)
        keep = (loaded.adata.uns.get("scembed_read") or {}).get("format") == "fragments"
    except ScEmbedError as exc:
        st.session_state[state.UPLOAD_ERROR] = widgets.engine_message(exc)
    if not keep:
        if uploads.may_be_fragments(spool.names):  # kept by the callback; not fragments
            # no st.rerun() after it: a rerun from here made the build panel's liftover
            # toggle vanish in the browser (Streamlit 1.67)
            widgets.release_uploads(UPLOADER)
        files = []  # released: nothing of them is read again

if st.session_state[state.UPLOAD_ERROR]:
    st.error(st.session_state[state.UPLOAD_ERROR], icon=":material/error:")
    st.caption("See 'Accepted formats' above, fix the file and upload it again.")

dataset = st.session_state[state.DATASET]
if dataset is None:
    st.info("Upload a dataset above, or load the demo dataset to try the app.")
    state.stop_page()

# --- QC and coverage before projecting ---------------------------------------------------------
st.subheader(widgets.md(dataset.name), anchor=False)
if st.session_state.get(state.DATASET_NOTICE):
    st.info(st.session_state[state.DATASET_NOTICE], icon=":material/restart_alt:")
dataset = genome.build_panel(dataset, ref_key, reference)  # detected build; liftover toggle
adata = dataset.adata
try:
    with st.spinner("Mapping the peaks onto the reference universe..."):
        coverage = cached.cached_coverage(dataset.digest, ref_key, adata, reference)
except ScEmbedError as exc:
    widgets.show_engine_error(
        exc, hint="Choose a reference on the same genome and species as your data."
    )
    st.page_link(state.PAGE_REFERENCE, label="Go to Reference", icon=":material/hub:")
    state.stop_page()

cols = st.columns(4)
cols[0].metric("Cells", f"{adata.n_obs:,}")
cols[1].metric("Peaks", f"{adata.n_vars:,}")
cols[2].metric(
    "Peaks in universe",
    f"{coverage.fraction_peaks_mapped:.1%}",
    help="Fraction of the query's peaks that overlap at least one reference region.",
)
cols[3].metric(
    "Cells mapping to nothing",
    f"{coverage.n_unmapped_cells:,}",
    help="Cells none of whose peaks hit a trained reference region; they cannot be embedded.",
)

query_genome = adata.uns.get("genome")
if query_genome and reference.genome != "unknown" and str(query_genome) != reference.genome:
    st.warning(
        f"The dataset says its genome build is {query_genome}, the reference is on "
        f"{reference.genome}. Peaks of another build land on the wrong regions: lift them "
        f"over to {reference.genome}, or choose a reference built on {query_genome}.",
        icon=":material/warning:",
    )
fit = trust_views.data_banner(dataset, ref_key, reference)  # names the cause: build, peak set...
for message in coverage.warnings:
    if fit is None or "peak set" not in message:  # low overlap: the verdict tells why
        st.warning(message, icon=":material/warning:")

left, right = st.columns([3, 2])
with left:
    n_regions = np.asarray(coverage.n_regions_per_cell)
    widgets.plot(
        figures.histogram(
            n_regions,
            title="Reference regions hit per cell",
            x_title="mapped regions",
            log_x=bool(n_regions.max(initial=0) > 1000),
        ),
        key="coverage_histogram",
    )
    st.caption(f"Median {np.median(n_regions):,.0f} mapped regions per cell.")
with right:
    label_cols = results.label_columns(adata.obs)
    guessed = results.truth_column(adata.obs)
    if guessed is not None:
        st.markdown(
            f":material/label: Cell types: **{widgets.md(guessed)}** (preselected as the truth "
            "column on the Annotation page)"
        )
    if label_cols:
        st.markdown("**Label columns found** (usable as ground truth on the Annotation page)")
        st.dataframe(
            {
                "column": label_cols,
                "categories": [int(adata.obs[c].nunique()) for c in label_cols],
            },
            hide_index=True,
        )
    else:
        st.markdown(
            "**No label columns found.** You can still project and cluster; scoring "
            "against known labels needs a column of cell types in `obs`."
        )

qc_views.section(dataset, ref_key, reference, n_regions, files)  # thresholds, live count

st.page_link(state.PAGE_PROJECT, label="Next: project the cells", icon=":material/arrow_forward:")
