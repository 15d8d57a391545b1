"""Annotation: transferred labels per cell and per cluster, scored against known labels."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import figures, results, state, widgets
from scembed_core.annotate import UNASSIGNED, annotate_clusters
from scembed_core.errors import ScEmbedError
from scembed_core.evaluate import classification_report, clustering_scores

NO_TRUTH = "(none)"

st.title("Annotation")
ref_key, reference = state.require_reference()
dataset = state.require_dataset()
run = state.require_projection(ref_key, dataset)
obs = dataset.adata.obs

if not reference.can_transfer_labels:
    st.info(
        f"The reference {widgets.md(reference.name)} has no labelled cells, so there is nothing to "
        "transfer. Choose a reference with cells, or train one from a labelled dataset."
    )
    st.page_link(state.PAGE_REFERENCE, label="Choose a reference", icon=":material/hub:")
    st.page_link(state.PAGE_TRAIN, label="Train a reference", icon=":material/model_training:")
    st.stop()

# --- form: thresholds ---------------------------------------------------------------------------
mapping_distance = run.projection.mapping_distance
distances = np.asarray([] if mapping_distance is None else mapping_distance, dtype=float)
finite = distances[np.isfinite(distances)]
left, right = st.columns(2)
with left:
    st.slider(
        "Minimum confidence",
        min_value=0.0,
        max_value=1.0,
        step=0.05,
        help="Fraction of the nearest reference cells that agree on the label; "
        "cells below it are 'Unassigned'.",
        **widgets.bound(state.MIN_CONFIDENCE),
    )
with right:
    if finite.size:
        top = float(np.ceil(finite.max() * 100) / 100) or 1.0
        if st.session_state[state.MAX_DISTANCE] is None:
            # default: the reference's own 99th percentile of neighbour distances
            q99 = reference.manifest.get("mapping_distance_q99")
            q99 = float(q99) if q99 is not None else float(np.quantile(finite, 0.99))
            st.session_state[state.MAX_DISTANCE] = min(top, round(q99, 2))
        st.session_state[state.MAX_DISTANCE] = min(st.session_state[state.MAX_DISTANCE], top)
        st.toggle(
            "Limit the mapping distance",
            help="Cells whose mean cosine distance to their nearest reference cells is "
            "larger are 'Unassigned' (they may be cell types the reference lacks).",
            **widgets.bound(state.LIMIT_DISTANCE),
        )
        st.slider(
            "Maximum mapping distance",
            min_value=0.0,
            max_value=top,
            step=0.01,
            disabled=not st.session_state[state.LIMIT_DISTANCE],
            **widgets.bound(state.MAX_DISTANCE),
        )
        n_far = int((finite > st.session_state[state.MAX_DISTANCE]).sum())
        st.caption(f"{n_far:,} cells lie farther than this from their nearest reference cells.")

try:
    transferred = results.labels(run, reference, obs.index)
except ScEmbedError as exc:
    widgets.show_engine_error(exc, hint="Check the label column on the Reference page.")
    st.stop()
cluster = results.current_clusters(run, dataset)

n_assigned = int((transferred["label"] != UNASSIGNED).sum())
cols = st.columns(3)
cols[0].metric("Cells labelled", f"{n_assigned:,}", help="Not 'Unassigned'.")
cols[1].metric("Unassigned", f"{len(transferred) - n_assigned:,}")
cols[2].metric("Median confidence", f"{np.nanmedian(transferred['confidence']):.2f}")

# --- per-cluster majority label -------------------------------------------------------------------
st.subheader("Clusters and their majority label")
table = annotate_clusters(cluster.to_numpy(), transferred["label"].to_numpy())
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "agreement": st.column_config.ProgressColumn(
            "agreement", min_value=0.0, max_value=1.0, format="percent"
        ),
        "n_cells": st.column_config.NumberColumn("cells"),
    },
)

# --- scoring against a truth column ----------------------------------------------------------------
st.subheader("Compare with your labels")
truth_options = [NO_TRUTH, *results.label_columns(obs)]
if st.session_state[state.TRUTH_KEY] not in truth_options:
    st.session_state[state.TRUTH_KEY] = NO_TRUTH
    st.session_state.pop(f"w_{state.TRUTH_KEY}", None)
truth_key = st.selectbox(
    "Column of your data holding the true cell types",
    truth_options,
    **widgets.bound(state.TRUTH_KEY),
)
if truth_key == NO_TRUTH:
    st.info("Pick a label column of your data to score the transferred labels against it.")
    st.stop()

truth = obs[truth_key]
predicted_names = sorted(set(transferred["label"]) - {UNASSIGNED})
saved = st.session_state[state.LABEL_MAP]
with st.expander("Map reference labels to your label names", icon=":material/edit:"):
    st.caption(
        "Reference and data often name the same cell type differently (e.g. 'CD14.Mono.1' "
        "vs 'Monocyte'). Edit the right column; scoring uses your names."
    )
    editor = st.data_editor(
        pd.DataFrame(
            {
                "reference label": predicted_names,
                "your label": [saved.get(name, name) for name in predicted_names],
            }
        ),
        key="label_map_editor",
        hide_index=True,
        disabled=["reference label"],
        column_config={
            "your label": st.column_config.SelectboxColumn(
                "your label",
                options=sorted(set(truth.dropna().astype(str)) | set(predicted_names)),
            )
        },
    )
label_map = dict(zip(editor["reference label"], editor["your label"], strict=True))
st.session_state[state.LABEL_MAP] = label_map

try:
    report = classification_report(truth, transferred["label"], label_map=label_map)
    scores = clustering_scores(
        truth, results.cluster_codes(run, st.session_state[state.RESOLUTION])
    )
except ScEmbedError as exc:
    widgets.show_engine_error(exc, hint="Choose another truth column.")
    st.stop()

cols = st.columns(5)
cols[0].metric("Accuracy", f"{report.accuracy:.3f}", help="Unassigned cells count as wrong.")
cols[1].metric("Macro F1", f"{report.macro_f1:.3f}")
cols[2].metric("ARI (clusters)", f"{scores['ari']:.3f}")
cols[3].metric("AMI (clusters)", f"{scores['ami']:.3f}")
cols[4].metric("Homogeneity", f"{scores['homogeneity']:.3f}")
if report.unmapped_labels:
    st.caption(
        f"{len(report.unmapped_labels)} reference label(s) have no name of yours and are "
        "scored as they are."
    )

normalize = st.toggle(
    "Row-normalised (recall per class)", **widgets.bound(state.NORMALIZE_CONFUSION)
)
widgets.plot(
    figures.confusion_heatmap(report.confusion, normalize_rows=normalize),
    key="annotate_confusion",
)
st.markdown("**Per-class scores**")
st.dataframe(
    report.per_class,
    hide_index=True,
    column_config={
        c: st.column_config.NumberColumn(c, format="%.3f") for c in ("precision", "recall", "f1")
    },
)
st.page_link(state.PAGE_EXPORT, label="Next: export the results", icon=":material/arrow_forward:")
