"""Annotation: transferred labels per cell and per cluster, scored against known labels."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import figures, guards, label_views, results, state, trust_views, widgets
from scembed_core.errors import ScEmbedError
from scembed_core.evaluate import classification_report, clustering_scores
from scembed_core.labels.assign import UNKNOWN
from scembed_core.labels.clusters import ABSENT_WARNING
from scembed_core.labels.vote import UNASSIGNED

NO_TRUTH = "(none)"
METHODS = {
    "classifier": "Reference classifier (calibrated probabilities)",
    "knn": "15-nearest-neighbour vote",
}

st.title("Annotation")
ref_key, reference = guards.require_reference()
dataset = guards.require_dataset()
run = guards.require_projection(ref_key, dataset)
obs = dataset.adata.obs

if not reference.can_transfer_labels:
    st.info(
        f"The reference {widgets.md(reference.name)} has no labelled cells, so there is nothing to "
        "transfer. Choose a reference with cells, or train one from a labelled dataset."
    )
    st.page_link(state.PAGE_REFERENCE, label="Choose a reference", icon=":material/hub:")
    st.page_link(state.PAGE_TRAIN, label="Train a reference", icon=":material/model_training:")
    state.stop_page()

# --- form: method and thresholds ------------------------------------------------------------------
st.radio(
    "Label method",
    list(METHODS),
    format_func=METHODS.get,
    horizontal=True,
    help="The classifier was fitted on the reference cells when the reference was built "
    "and gives a probability for every class; the vote counts the labels of the 15 nearest "
    "reference cells.",
    **widgets.bound(state.LABEL_METHOD),
)
used_method, method_note = results.label_method(reference)
if method_note:
    st.info(method_note, icon=":material/info:")
calibration = {}
if used_method == "classifier":
    calibration = reference.label_model.calibration or {}
mapping_distance = run.projection.mapping_distance
distances = np.asarray([] if mapping_distance is None else mapping_distance, dtype=float)
finite = distances[np.isfinite(distances)]
left, right = st.columns(2)
with left:
    st.slider(
        "Minimum probability",
        min_value=0.0,
        max_value=1.0,
        step=0.05,
        help="Cells whose most likely class has a lower probability are 'Unassigned'. "
        "With the kNN vote the probability is the share of neighbours that agree.",
        **widgets.bound(state.MIN_CONFIDENCE),
    )
    threshold = float(st.session_state[state.MIN_CONFIDENCE])
    point = figures.coverage_at(calibration, threshold) if calibration else None
    if point is not None:
        st.caption(
            f"On held-out reference cells, at {threshold:.2f} {point[0]:.0%} of the cells keep "
            f"a label and {point[1]:.1%} of those are right (the same donor as the reference: "
            "expect less on a new donor)."
        )
        widgets.plot(
            figures.coverage_curve(calibration, threshold=threshold), key="annotate_coverage"
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

trust_views.unknown_controls(reference)

try:
    transferred = results.labels(run, reference, obs.index)
except ScEmbedError as exc:
    widgets.show_engine_error(exc, hint="Check the label column on the Reference page.")
    state.stop_page()
cluster = results.current_clusters(run, dataset)

n_assigned = int((transferred["label"] != UNASSIGNED).sum())
n_unknown = int((transferred["label"] == UNKNOWN).sum())
mapped = transferred["label"] != UNASSIGNED
trust_views.fit_banner(
    trust_views.dataset_fit(dataset, ref_key, reference), n_unknown / max(int(mapped.sum()), 1)
)
cols = st.columns(4)
cols[0].metric("Cells labelled", f"{n_assigned - n_unknown:,}", help="A reference type.")
cols[1].metric("Unknown", f"{n_unknown:,}", help="Like no reference type (the rule above).")
cols[2].metric("Unassigned", f"{len(transferred) - n_assigned:,}")
cols[3].metric("Median probability", f"{np.nanmedian(transferred['confidence']):.2f}")

# --- per-cluster majority label -------------------------------------------------------------------
st.subheader("Clusters and their majority label")
table = results.cluster_table(run, cluster, transferred, reference)
flagged = table.loc[table["possibly_absent"] | table["unknown"], "cluster"].tolist()
if flagged:
    st.warning(
        f"Cluster{'s' if len(flagged) > 1 else ''} {', '.join(map(widgets.md, flagged))}: "
        f"{ABSENT_WARNING}. Most of its cells are Unknown or lie farther from the reference "
        "than 99% of the reference cells lie from their own neighbours: its labels are guesses.",
        icon=":material/warning:",
    )
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "agreement": st.column_config.ProgressColumn(
            "agreement", min_value=0.0, max_value=1.0, format="percent"
        ),
        "n_cells": st.column_config.NumberColumn("cells"),
        "median_confidence": st.column_config.NumberColumn("median probability", format="%.2f"),
        "median_mapping_distance": st.column_config.NumberColumn(
            "median mapping distance", format="%.3f"
        ),
        "possibly_absent": st.column_config.CheckboxColumn(
            "possibly absent from the reference",
            help=f"True: {ABSENT_WARNING} (median mapping distance above the reference's own "
            "99th percentile).",
        ),
    },
)

# --- probabilities and explanations ----------------------------------------------------------------
st.subheader("Class probabilities")
probability_tab, why_tab = st.tabs(["Probability map", "Why this label"])
with probability_tab:
    label_views.probability_map(run, dataset, reference, transferred)
with why_tab:
    label_views.why_this_label(run, dataset, reference, transferred)

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
    state.stop_page()

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
    state.stop_page()

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
