"""Export: the annotated dataset, tables and figures as files.

Every file is built only when its button is clicked (deferred download data).
"""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from scembed_app import cached, exports, figures, guards, results, state, widgets
from scembed_core.errors import ScEmbedError
from scembed_core.evaluate import classification_report

st.title("Export")
ref_key, reference = guards.require_reference()
dataset = guards.require_dataset()
run = guards.require_projection(ref_key, dataset)
adata = dataset.adata
base = dataset.name.removeprefix("demo: ").split(" + ")[0].split(".")[0]
stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in base)[:40] or "scembed"

cluster = results.current_clusters(run, dataset)
try:
    transferred = results.labels(run, reference, adata.obs_names)
except ScEmbedError as exc:
    widgets.show_engine_error(exc, hint="Check the thresholds on the Annotation page.")
    state.stop_page()
# Deferred downloads run outside this script run: read the session's settings now.
settings = results.export_settings(dataset, ref_key, reference)


def annotated_file(counts: bool = True) -> ad.AnnData:
    """Build the query with this session's results (the engine's one writer)."""
    return results.annotated(run, dataset, reference, transferred, settings, counts=counts)


annotated = annotated_file(counts=False)  # the tables only; the file is built on click
table = exports.per_cell_table(annotated)
if transferred is not None:
    cluster_table = exports.cluster_table(annotated)
else:
    cluster_table = cluster.value_counts().rename_axis("cluster").reset_index(name="n_cells")


def download(column: Any, label: str, data: Any, file_name: str, mime: str, **kwargs: Any) -> None:
    """Offer a deferred download button (the file is built only when clicked)."""
    column.download_button(
        label,
        data=data,
        file_name=file_name,
        mime=mime,
        icon=":material/download:",
        on_click="ignore",
        **kwargs,
    )


st.subheader("Data")
st.caption(
    f"{len(table):,} cells; columns "
    f"{', '.join(c for c in table.columns if not c.startswith(exports.PROBABILITY_CSV_PREFIX))}"
    f" and {sum(c.startswith(exports.PROBABILITY_CSV_PREFIX) for c in table.columns)} class "
    "probabilities (scembed_prob_<class>). Settings: resolution "
    f"{settings['resolution']:.3f}, minimum confidence {settings['min_confidence']:.2f}"
    + (
        ""
        if settings.get("unknown_rate") is None
        else f", Unknown strictness {settings['unknown_rate']:.0%}"
    )
    + "."
)
cols = st.columns(3)
download(
    cols[0],
    "Annotated .h5ad",
    lambda: exports.annotated_h5ad_bytes(annotated_file()),
    f"{stem}_scembed.h5ad",
    "application/x-hdf5",
    help="Your data with scembed_* columns in obs; X_scembed, X_scembed_whitened and "
    "X_scembed_umap in obsm (the command line's keys).",
)
download(
    cols[1],
    "Per-cell table (.csv)",
    lambda: exports.csv_bytes(table),
    f"{stem}_cells.csv",
    "text/csv",
)
download(
    cols[2],
    "Cluster table (.csv)",
    lambda: exports.csv_bytes(cluster_table, index=False),
    f"{stem}_clusters.csv",
    "text/csv",
)
st.dataframe(table.head(200), height=250)

# --- figures -----------------------------------------------------------------------------------
st.subheader("Figures")
has_map = run.projection.umap is not None


def map_coords() -> np.ndarray:
    """Return the reference-map coordinates, or the query's own UMAP without a map."""
    if has_map:
        return np.asarray(run.projection.umap)
    return cached.cached_embedding_umap(run.cache_key, run.projection.space)


def map_figure() -> go.Figure:
    """Draw the map coloured by label (or cluster)."""
    coords = map_coords()
    color = transferred["label"] if transferred is not None else cluster
    return figures.query_map(
        coords,
        pd.Series(color.to_numpy(), name=color.name),
        results.hover_fields(adata.obs_names, cluster, transferred),
        reference_coords=np.asarray(reference.cells.obsm["X_umap"]) if has_map else None,
        continuous=False,
        colors=colors,
    )


def panels_figure() -> go.Figure:
    """Draw one panel per cluster."""
    ref = np.asarray(reference.cells.obsm["X_umap"]) if has_map else None
    return figures.cluster_panels(map_coords(), cluster, reference_coords=ref, colors=colors)


# Deferred downloads run on another thread, outside this script run: read the session's
# settings now, not inside the callables.
truth_key = results.truth_column(adata.obs)
label_map = {}
if truth_key is not None and transferred is not None:
    label_map = results.scoring_map(
        adata.obs[truth_key], sorted(set(transferred["label"].astype(str)) - {"Unassigned"})
    )
normalize = bool(st.session_state[state.NORMALIZE_CONFUSION])
colors = results.chart_colors(reference)


def confusion_figure() -> go.Figure:
    """Draw the confusion matrix against the truth column."""
    report = classification_report(adata.obs[truth_key], transferred["label"], label_map=label_map)
    return figures.confusion_heatmap(report.confusion, normalize_rows=normalize, colors=colors)


cols = st.columns(3)
html = "text/html"
download(
    cols[0],
    "Map (labels or clusters)",
    lambda: exports.figure_html(map_figure()),
    f"{stem}_map.html",
    html,
)
download(
    cols[1],
    "Per-cluster panels",
    lambda: exports.figure_html(panels_figure()),
    f"{stem}_cluster_panels.html",
    html,
)
if transferred is not None and truth_key in adata.obs:
    download(
        cols[2],
        "Confusion matrix",
        lambda: exports.figure_html(confusion_figure()),
        f"{stem}_confusion.html",
        html,
    )
else:
    cols[2].caption("The confusion matrix needs a truth column (Annotation page).")

lineage_of = results.lineages(reference) if transferred is not None else {}
reference_key = results.transfer_label_key(reference)
has_truth = transferred is not None and truth_key in adata.obs


def all_figures() -> dict:
    """Every figure of the analysis, by file stem (the colours of every page)."""
    from scembed_core.lineage import lineage_report

    ref_coords = np.asarray(reference.cells.obsm["X_umap"]) if has_map else None
    out = {f"{stem}_map": map_figure(), f"{stem}_cluster_panels": panels_figure()}
    if ref_coords is not None and reference_key is not None:
        out[f"{stem}_reference_map"] = figures.reference_map(
            ref_coords, reference.cells.obs[reference_key], colors=colors, title="Reference map"
        )
    if has_truth:
        out[f"{stem}_your_labels_map"] = figures.query_map(
            map_coords(),
            adata.obs[truth_key].astype(str).rename(truth_key),
            results.hover_fields(adata.obs_names, cluster, transferred),
            reference_coords=ref_coords,
            continuous=False,
            colors=colors,
            title=f"Your labels ({truth_key})",
        )
        out[f"{stem}_confusion"] = confusion_figure()
        if lineage_of:
            report = lineage_report(
                adata.obs[truth_key], transferred["label"], lineage_of, label_map=label_map
            )
            out[f"{stem}_lineage_confusion"] = figures.confusion_heatmap(
                report.confusion, normalize_rows=normalize, colors=colors, title="Lineages"
            )
    return out


st.caption(
    "Every chart in the app saves itself as PNG or SVG with the camera icon at its top right "
    "(the format is chosen in the sidebar). All figures at once: one HTML page that opens "
    "offline, with a PNG and an SVG button per figure."
)
download(
    st,
    "All figures (HTML page, PNG and SVG per figure)",
    lambda: exports.figure_bundle_html(all_figures(), title=f"scEmbed figures: {stem}"),
    f"{stem}_figures.html",
    html,
)

# --- re-run on the command line (run.json) --------------------------------------------------------
import json  # this section stands on its own (imports here)

from scembed_app import reproduce

st.subheader("Re-run on the command line")
st.caption(
    "run.json records the reference, every setting, the seeds and your input file's digest; "
    "the command below recomputes the same labels, clusters and map from that file."
)
spec_now = st.session_state[state.REFERENCE_SPEC]
try:
    run_doc = results.run_document(run, dataset, reference, settings)
except ScEmbedError as exc:
    widgets.show_engine_error(exc)
    state.stop_page()
download(
    st,
    "run.json",
    (json.dumps(run_doc, indent=2) + "\n").encode(),
    "run.json",
    "application/json",
    help="Engine version, reference identity and fingerprint, every parameter, input digest.",
)
st.code(reproduce.command_line(dataset, spec_now), language="bash")
if spec_now.startswith("session:"):
    st.caption(
        "This reference was trained in this tab: download its bundle on the Train page and "
        "unzip it beside the input first (the command names its folder)."
    )
