"""Annotation page pieces: the per-class probability map and the "why this label" panel.

Both are fragments: choosing a class or a cell reruns only the fragment, never the
projection or the labels (which come from the cached engine call in :mod:`results`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import cached, figures, results, state, widgets
from scembed_app.uploads import LoadedDataset
from scembed_core.labels.assign import PROBABILITY_PREFIX, explain_label, label_classes


def map_coordinates(run: state.ProjectionRun) -> tuple[np.ndarray, bool]:
    """Coordinates to draw (the reference map when EV-projected) and whether they are it."""
    if run.projection.umap is not None:
        return np.asarray(run.projection.umap), True
    return cached.cached_embedding_umap(run.cache_key, run.projection.space), False


@st.fragment
def probability_map(
    run: state.ProjectionRun, dataset: LoadedDataset, reference: Any, transferred: pd.DataFrame
) -> None:
    """Colour the query cells by the probability of one chosen class."""
    classes = label_classes(transferred)
    if not classes:
        st.caption("No class probabilities for these labels.")
        return
    counts = transferred["predicted"].value_counts()
    default = classes.index(counts.index[0]) if counts.index[0] in classes else 0
    chosen = st.selectbox("Class", classes, index=default, key="annotate_probability_class")
    coords, on_reference = map_coordinates(run)
    values = transferred[PROBABILITY_PREFIX + chosen].astype(float).rename(f"P({chosen})")
    cluster = results.current_clusters(run, dataset)
    hover = results.hover_fields(dataset.adata.obs_names, cluster, transferred)
    hover[f"P({chosen})"] = values.to_numpy()
    ref_coords = None
    if on_reference and reference.cells is not None and "X_umap" in reference.cells.obsm:
        ref_coords = np.asarray(reference.cells.obsm["X_umap"])
    fig = figures.query_map(coords, values, hover, reference_coords=ref_coords, continuous=True)
    widgets.plot(fig, key="annotate_probability_map")
    st.caption(
        f"{int((values >= 0.5).sum()):,} cells have P({widgets.md(chosen)}) ≥ 0.5"
        + ("; the grey points are the reference cells." if ref_coords is not None else ".")
    )


@st.fragment
def why_this_label(
    run: state.ProjectionRun, dataset: LoadedDataset, reference: Any, transferred: pd.DataFrame
) -> None:
    """For one picked cell: its top 3 classes, its nearest reference cells, its distance."""
    names = dataset.adata.obs_names
    cell = st.selectbox("Cell", list(names), key="annotate_why_cell")
    row = int(names.get_loc(cell))
    why = explain_label(
        transferred,
        run.projection.neighbors,
        reference,
        row,
        label_key=results.transfer_label_key(reference),
    )
    cols = st.columns(3)
    cols[0].metric("Label", why["label"])
    confidence = why["confidence"]
    cols[1].metric("Top probability", "–" if not np.isfinite(confidence) else f"{confidence:.2f}")
    distance = why["mapping_distance"]
    cols[2].metric("Mapping distance", "–" if not np.isfinite(distance) else f"{distance:.3f}")
    q50, q99 = why["mapping_distance_q50"], why["mapping_distance_q99"]
    if q99 is not None and np.isfinite(distance):
        where = "farther than" if distance > q99 else "within"
        st.caption(
            f"Reference cells lie {q50:.3f} (median) from their own neighbours; this cell is "
            f"{where} the reference's 99th percentile ({q99:.3f})."
        )
    left, right = st.columns(2)
    with left:
        st.markdown("**Top classes**")
        st.dataframe(
            why["top"],
            hide_index=True,
            column_config={
                "probability": st.column_config.ProgressColumn(
                    "probability", min_value=0.0, max_value=1.0, format="%.3f"
                )
            },
        )
    with right:
        st.markdown("**Labels of its nearest reference cells**")
        st.dataframe(why["neighbors"], hide_index=True)
