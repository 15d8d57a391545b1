"""Reference: choose the pretrained model the query cells are projected onto."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import json
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import (
    cached,
    deployment,
    figures,
    guards,
    quickref,
    results,
    state,
    trust_views,
    widgets,
)
from scembed_core.errors import HubUnavailableError, ScEmbedError, UntrustedSourceError
from scembed_core.labels.unknown import TRUST_KEY

st.title("Reference")
st.caption(
    "A reference is a Word2Vec model of genomic regions (the universe) trained on "
    "annotated scATAC-seq cells. Query cells are embedded with its region vectors, placed "
    "on its map and labelled from its nearest cells."
)

HOSTED = deployment.is_hosted()
SOURCES = {
    "default": "Built-in default",
    "folder": "Folder on disk",
    "session": "Trained in this session",
    "hub": "Hugging Face hub",
}
if HOSTED:  # a public deployment never opens a folder a visitor names
    del SOURCES["folder"]


def use_reference(spec: str, trust: bool) -> None:
    """Load ``spec``; on success make it this tab's reference, else explain why not."""
    if HOSTED and not (spec == "default" or spec.startswith(("hf:", "session:"))):
        st.error(
            "This public deployment loads hub models (hf:owner/name[@revision]), the built-in "
            "reference and references trained in this tab, not folders.",
            icon=":material/error:",
        )
        return
    try:
        cached.load_reference_spec(spec, trust)
    except UntrustedSourceError as exc:
        if not state.trust_allowed():  # no box to tick here: say so, not "tick the box"
            st.error(
                "This model's only weights are a Python pickle (a gensim model.bin), which can "
                "run code when loaded; this server never loads pickles. Use a model that has "
                "model.safetensors or checkpoint.pt, the built-in reference, or train one on "
                "the Train page.",
                icon=":material/error:",
            )
            return
        widgets.show_engine_error(
            exc, hint="Tick 'I trust this source' only for models from a source you trust."
        )
        return
    except HubUnavailableError as exc:
        widgets.show_engine_error(
            exc,
            hint="This server cannot download the model now. Use the built-in reference, "
            + ("" if HOSTED else "a folder on the server, ")
            + "or train a reference on the Train page.",
        )
        return
    except ScEmbedError as exc:
        widgets.show_engine_error(exc, hint="Check the path or name and try again.")
        return
    st.session_state[state.REFERENCE_SPEC] = spec
    st.session_state[state.TRUST_HUB] = trust
    st.session_state[state.LABEL_KEY] = None
    st.toast(f"Reference set to {spec.removeprefix('session:')}", icon=":material/check:")


def charts(view: Any, label_key: str, by_lineage: bool) -> tuple[Any, Any]:
    """The count bar and the map (None without map coordinates) of a reference's cells."""
    from scembed_core.compact import ReferenceSummary

    colors = results.chart_colors(view, label_key)
    if isinstance(view, ReferenceSummary):
        coords, labels = view.coords, view.labels(label_key)
    elif "X_umap" in view.cells.obsm:
        coords, labels = view.cells.obsm["X_umap"], view.cells.obs[label_key]
    else:
        coords, labels = None, view.cells.obs[label_key]
    labels = np.asarray(labels, dtype=object).astype(str)
    kind = "cell type"
    if by_lineage:
        from scembed_core.lineage import to_lineages

        labels, kind = to_lineages(labels, results.lineages(view, label_key)), "lineage"
    bar = figures.count_bar(
        pd.Series(labels).value_counts(),
        title=f"Reference cells per {'lineage' if by_lineage else label_key}",
        colors=colors,
    )
    if coords is None:
        return bar, None
    title = f"Reference map (UMAP) by {kind}"
    return bar, figures.reference_map(coords, labels, title=title, colors=colors, kind=kind)


@st.cache_resource(show_spinner=False, max_entries=8)
def landing_charts(folder: str, label_key: str, by_lineage: bool, _summary: Any) -> tuple:
    """:func:`charts` of the built-in reference's compact view, once per process.

    Shared by every session and never mutated (``st.plotly_chart`` serialises a copy):
    a new visitor's landing page, or a reload, draws without rebuilding the figures.
    ``folder`` names the bundle (its files are checksum-verified and never change).
    """
    return charts(_summary, label_key, by_lineage)


# --- form: pick a source ---------------------------------------------------------------------
spec_now = st.session_state[state.REFERENCE_SPEC]
with st.expander("Choose a reference", expanded=False, icon=":material/swap_horiz:"):
    source = st.radio(
        "Source",
        list(SOURCES),
        format_func=SOURCES.get,
        horizontal=True,
        key="reference_source",
    )
    if source == "default":
        st.write("The built-in reference ships with the app (see About for its provenance).")
        if st.button("Use the built-in reference", disabled=spec_now == "default"):
            use_reference("default", False)
    elif source == "folder":
        with st.form("reference_folder"):
            folder = st.text_input(
                "Bundle folder on the server",
                placeholder="/path/to/reference_bundle",
                help="A folder with manifest.json (written by this app or the CLI), "
                "or a geniml model folder (config.yaml, universe.bed, weights).",
            )
            trust = widgets.trust_checkbox(
                "Only a geniml folder whose weights are a gensim model.bin (a pickle) needs it.",
                key="trust_folder_source",
            )
            if st.form_submit_button("Load folder") and folder.strip():
                use_reference(folder.strip(), trust)
    elif source == "session":
        trained = st.session_state[state.TRAINED]
        if not trained:
            st.info("No reference was trained in this tab yet.")
            st.page_link(state.PAGE_TRAIN, label="Train one", icon=":material/model_training:")
        else:
            name = st.selectbox("Trained reference", list(trained))
            if st.button("Use this reference"):
                use_reference(f"session:{name}", False)
    else:
        from scembed_app import catalog  # the hub's catalogue: only when it is shown

        known = st.selectbox(
            "Known models",
            list(catalog.HUB_CHOICES),
            format_func=lambda spec: spec.removeprefix("hf:"),
        )
        st.caption(catalog.HUB_CHOICES[known])
        typed = st.text_input(
            "Or any model as hf:owner/name[@revision]",
            placeholder="hf:databio/r2v-luecken2021-hg38-v2@main",
        )
        trust = widgets.trust_checkbox(
            "Only hub models whose sole weights are a gensim model.bin (a pickle) need it.",
            key="trust_hub_source",
        )
        st.caption(
            "Hub models are region models: they support projection and clustering. "
            "Label transfer and the reference map need a reference with cells."
        )
        if st.button("Load from the hub", icon=":material/cloud_download:"):
            use_reference((typed.strip() or known), trust)

# --- the current reference --------------------------------------------------------------------
# The built-in reference's map and labels come from its compact form first (no anndata, no
# vectors, no index): the metrics and charts are drawn before the full reference is loaded.
summary = quickref.quick_summary(st.session_state[state.REFERENCE_SPEC])  # after the form
reference = None
if summary is None:
    ref_key, reference = guards.require_reference()
view = summary if summary is not None else reference

st.subheader(widgets.md(view.name), anchor=False)
cols = st.columns(4)
cols[0].metric("Genome build", view.genome)
cols[1].metric("Reference cells", f"{view.n_cells:,}")
cols[2].metric("Regions", f"{view.n_regions:,}")
label_key = None
if view.label_keys:
    label_key = st.session_state.get(state.LABEL_KEY) or view.default_label_key
    if label_key not in view.label_keys:
        label_key = view.default_label_key
    cols[3].metric("Cell types", f"{view.label_counts(label_key).size:,}")
else:
    cols[3].metric("Cell types", "none")

if len(view.label_keys) > 1:
    chosen = st.selectbox(
        "Label column to transfer",
        view.label_keys,
        index=view.label_keys.index(label_key),
    )
    if chosen != label_key:
        st.session_state[state.LABEL_KEY] = chosen
        label_key = chosen

has_cells = summary is not None or reference.cells is not None
if has_cells and label_key is not None:
    by_lineage = bool(results.lineages(view, label_key)) and (
        st.segmented_control(
            "Colour reference cells by",
            ["Cell type", "Lineage"],
            default="Cell type",
            key="reference_color_by",
            help="Lineages (T, NK, B, myeloid, erythroid, progenitor...) come from the "
            "reference's label hierarchy, or from the label names when it has none; each "
            "lineage has the hue its cell types are shades of.",
        )
        == "Lineage"
    )
    if summary is not None:  # the same figures for every visitor: built once, shared
        bar, fig = landing_charts(str(summary.path), label_key, by_lineage, summary)
    else:
        bar, fig = charts(reference, label_key, by_lineage)
    left, right = st.columns([2, 3])
    with left:
        widgets.plot(bar, key="reference_counts")
    with right:
        if fig is not None:
            widgets.plot(fig, key="reference_map")
elif not has_cells:
    st.info(
        "This is a region-only model: query cells can be projected and clustered, "
        "but there are no reference cells to transfer labels from or to draw a map."
    )

# The sections below read the bundle's manifest and label classifier: from the compact
# view for the built-in reference (the full reference is loaded in the background once this
# page is drawn: scembed_app.quickref.start_projection_warmup), else from the reference.
if summary is not None:
    try:
        label_model = quickref.cached_label_model(str(summary.path))
    except ScEmbedError:
        summary = None
if summary is None:
    if reference is None:
        ref_key, reference = guards.require_reference()
    view, label_model = reference, reference.label_model

abilities = [
    ("E-projection (embed new cells)", True),
    ("EV-projection (place cells on the reference map)", view.can_ev_project),
    ("kNN label transfer", view.can_transfer_labels),
    ("Label classifier with calibrated probabilities", label_model is not None),
]
st.markdown(
    "  \n".join(f":material/{'check_circle' if ok else 'block'}: {text}" for text, ok in abilities)
)

if view.can_transfer_labels:
    st.subheader("Label classifier and its calibration", anchor=False)
    model = label_model
    if model is None:
        st.info(
            "This reference has no label classifier (it was built before scEmbed stored "
            "one): labels come from the 15-nearest-neighbour vote. Rebuild it on the Train "
            "page to get calibrated class probabilities.",
            icon=":material/info:",
        )
    else:
        calibration = model.calibration or {}
        cols = st.columns(4)
        cols[0].metric("Classes", f"{len(model.classes):,}", help=f"From {model.label_key!r}.")
        for col, (name, key) in zip(
            cols[1:],
            [("Held-out accuracy", "accuracy"), ("Held-out macro F1", "macro_f1"), ("ECE", "ece")],
            strict=True,
        ):
            value = calibration.get(key)
            col.metric(name, "–" if value is None else f"{value:.3f}")
        spaces = {"plain": "mean-pooled", "whitened": "whitened", "both": "mean-pooled + whitened"}
        blend = model.params.knn_weight
        st.caption(
            f"A multinomial logistic regression on the reference cells' "
            f"{spaces.get(model.params.space, model.params.space)} embeddings "
            f"(C={model.params.C:g}"
            + (f", blended {blend:.0%} with the 15-neighbour vote" if blend else "")
            + f"). Before it was fitted on all cells, {calibration.get('n_cells', 0):,} "
            f"reference cells ({calibration.get('holdout_fraction', 0):.0%}, stratified) were "
            f"held out and its probabilities rescaled on them by one temperature "
            f"({model.temperature:.2f}). "
            "The curves show how often its top class was right at each predicted probability, "
            "and how accuracy rises as a probability threshold leaves more cells 'Unassigned'. "
            "They are measured on the reference's own donor; a new donor scores lower."
        )
        if calibration:  # on demand: four charts at once delay the landing page's first one
            curves = st.expander(
                "Reliability and accuracy-vs-coverage curves",
                key=state.REFERENCE_CURVES,
                on_change="rerun",  # lazy: drawn only once opened
            )
            if curves.open:
                left, right = curves.columns(2)
                with left:
                    widgets.plot(
                        figures.reliability_curve(calibration), key="reference_reliability"
                    )
                with right:
                    widgets.plot(figures.coverage_curve(calibration), key="reference_coverage")
if view.can_transfer_labels:
    if summary is not None and TRUST_KEY not in summary.manifest:  # computed from the cells
        ref_key, reference = guards.require_reference()
    trust_views.reference_rule(reference if reference is not None else summary)

with st.expander("Training parameters and provenance", icon=":material/description:"):
    manifest = {k: v for k, v in view.manifest.items() if k != "files"}
    shown = manifest or (reference.model.metadata if reference is not None else {})
    if HOSTED:  # e.g. a hub model's "source" is its folder in the server's download cache
        shown = {
            k: deployment.redact_paths(v) if isinstance(v, str) else v for k, v in shown.items()
        }
    # key facts as text and the whole manifest as a file: a JSON tree view of it cost the
    # browser ~1 s before the first chart (benchmarks.cold, browser main-thread time)
    st.markdown(widgets.provenance_table(shown))
    st.download_button(
        "Download manifest.json",
        json.dumps(shown, indent=1, default=str),
        file_name="manifest.json",
        mime="application/json",
        icon=":material/download:",
        on_click="ignore",
    )

st.page_link(state.PAGE_DATA, label="Next: load your data", icon=":material/arrow_forward:")
