"""The Annotation page's scoring section: truth column, label map, accuracy, lineages.

The truth column is preselected by the engine's guess (:func:`scembed_core.io.guess_label_key`),
names that agree up to case and punctuation are matched without any action, and a mapping
suggested from the cells themselves (:func:`scembed_core.labels.names.suggest_label_map`) is
one click away, editable as a table and kept in the workspace (``state.LABEL_MAP``) and in
``run.json``. The lineage view scores the same labels one level up
(:func:`scembed_core.lineage.lineage_report`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from scembed_app import figures, results, state, widgets
from scembed_core.errors import ScEmbedError
from scembed_core.labels.vote import UNASSIGNED

EDITOR_KEY = "label_map_editor"
TRUTH_WIDGET = f"w_{state.TRUTH_KEY}"  # the key AppTests know


def _pick_truth() -> None:
    st.session_state[state.TRUTH_KEY] = st.session_state[TRUTH_WIDGET]


def _suggest(truth: pd.Series, predicted: pd.Series) -> None:
    from scembed_core.labels.names import suggest_label_map

    st.session_state[state.LABEL_MAP] = suggest_label_map(truth, predicted)
    st.session_state.pop(EDITOR_KEY, None)  # the table shows the new map
    st.session_state["label_map_suggested"] = True


def _reset() -> None:
    st.session_state[state.LABEL_MAP] = {}
    st.session_state.pop(EDITOR_KEY, None)


def truth_select(obs: pd.DataFrame) -> str | None:
    """The truth-column select box, preselected with the guess; returns the column or None."""
    options = [results.NO_TRUTH, *results.label_columns(obs)]
    current = results.truth_column(obs)
    index = options.index(current) if current in options else 0
    if st.session_state.get(TRUTH_WIDGET) not in options:
        st.session_state.pop(TRUTH_WIDGET, None)
    chosen = st.selectbox(
        "Column of your data holding the true cell types",
        options,
        index=index,
        key=TRUTH_WIDGET,
        on_change=_pick_truth,
    )
    if chosen != results.NO_TRUTH and st.session_state.get(state.TRUTH_KEY) is None:
        st.caption(f"Preselected: {widgets.md(chosen)} looks like your cell types.")
    return None if chosen == results.NO_TRUTH else chosen


def label_map_editor(truth: pd.Series, transferred: pd.DataFrame) -> dict[str, str]:
    """The reference -> user name table (one-click suggestion, editable); returns the map."""
    predicted_names = sorted(set(transferred["label"].astype(str)) - {UNASSIGNED})
    current = results.scoring_map(truth, predicted_names)
    user_names = set(truth.dropna().astype(str))
    unmatched = [n for n in predicted_names if current[n] not in user_names]
    left, right = st.columns([3, 1])
    if unmatched:
        left.info(
            f"{len(unmatched)} reference label(s) have no name in your column "
            f"(e.g. {widgets.md(unmatched[0])}); they count as wrong until mapped.",
            icon=":material/info:",
        )
    elif st.session_state.pop("label_map_suggested", False):
        left.success("Mapping suggested from the cells: edit it below.", icon=":material/done:")
    right.button(
        "Suggest a mapping",
        help="Each reference label goes to the label of yours most of its cells carry "
        "(several reference labels may go to one of yours); matching names are kept.",
        on_click=_suggest,
        args=(truth, transferred["label"]),
        type="primary" if unmatched else "secondary",
        icon=":material/auto_fix_high:",
    )
    with st.expander(
        "Map reference labels to your label names", icon=":material/edit:", expanded=bool(unmatched)
    ):
        st.caption(
            "Names that agree up to case and punctuation are matched already. Edit the right "
            "column; scoring uses your names. Saved with the analysis and in run.json."
        )
        editor = st.data_editor(
            pd.DataFrame(
                {
                    "reference label": predicted_names,
                    "your label": [current[n] for n in predicted_names],
                }
            ),
            key=EDITOR_KEY,
            hide_index=True,
            disabled=["reference label"],
            column_config={
                "your label": st.column_config.SelectboxColumn(
                    "your label", options=sorted(user_names | set(predicted_names))
                )
            },
        )
        st.button("Reset the mapping", on_click=_reset)
    edited = {
        str(k): str(v) for k, v in zip(editor["reference label"], editor["your label"], strict=True)
    }
    if edited != current:  # only a real edit is saved (a look never changes the analysis)
        st.session_state[state.LABEL_MAP] = edited
    return edited


def lineage_section(
    truth: pd.Series, transferred: pd.DataFrame, reference: Any, label_map: dict
) -> None:
    """Lineage-level accuracy and confusion (the reference's hierarchy, else the names)."""
    from scembed_core.lineage import lineage_report

    lineage_of = results.lineages(reference)
    if not lineage_of:
        return
    st.markdown("**Lineages** (T, NK, B, myeloid, erythroid, progenitor...)")
    try:
        report = lineage_report(truth, transferred["label"], lineage_of, label_map=label_map)
    except ScEmbedError as exc:
        widgets.show_engine_error(exc)
        return
    cols = st.columns(3)
    cols[0].metric("Lineage accuracy", f"{report.accuracy:.3f}")
    cols[1].metric("Lineage macro F1", f"{report.macro_f1:.3f}")
    cols[2].metric("Lineages", f"{len(report.per_class)}")
    widgets.plot(
        figures.confusion_heatmap(
            report.confusion,
            normalize_rows=bool(st.session_state[state.NORMALIZE_CONFUSION]),
            colors=results.chart_colors(reference),
            title="Lineages: truth vs predicted",
        ),
        key="annotate_lineage_confusion",
    )
