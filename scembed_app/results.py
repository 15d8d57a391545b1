"""The per-projection results every page shares: clusters, labels, hover fields.

Each function composes cached engine calls with the settings in session state, so the
Project, Clusters, Annotation and Export pages show the same numbers without any of
them recomputing the projection. Clusters and labels restored from a workspace
(``state.STORED_RESULTS``, see :mod:`scembed_app.workspaces`) are used as they are while the
settings they were computed under (:func:`clusters_key`, :func:`labels_key`) still hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import cached, deployment, reproduce, state
from scembed_app.uploads import LoadedDataset
from scembed_core.labels.vote import UNASSIGNED

MAX_LABEL_CATEGORIES = 200


def mapped_mask(run: state.ProjectionRun) -> np.ndarray:
    """Cells with a finite embedding (at least one region in the reference universe)."""
    return np.isfinite(np.asarray(run.projection.embedding)).all(axis=1)


def knn_graph(run: state.ProjectionRun) -> Any:
    """Return the projected cells' kNN graph, ``se.tl.neighbors`` (cached per upload)."""
    from scembed_core.results import ANALYSIS, EMBEDDING

    use_rep = EMBEDDING if run.projection.analysis is None else ANALYSIS
    return cached.cached_neighbors(run.cache_key, state.N_NEIGHBORS, use_rep, run.projection.space)


def clusters_key(run: state.ProjectionRun, resolution: float) -> dict:
    """Everything the clusters depend on (the projection, the graph's k, the resolution)."""
    return {
        "run": run.cache_key,
        "n_neighbors": state.N_NEIGHBORS,
        "resolution": float(resolution),
    }


def _tab(session: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The tab's state: ``st.session_state`` unless a caller passes another (the warm-up)."""
    return st.session_state if session is None else session


def labels_key(
    run: state.ProjectionRun,
    reference: Any,
    *,
    k: int = 15,
    session: Mapping[str, Any] | None = None,
) -> dict | None:
    """Everything the transferred labels depend on, or None without reference labels.

    ``session`` is the tab's state the settings come from (``st.session_state`` when
    omitted; the server's warm-up passes a new tab's, :func:`scembed_app.state.defaults`).
    """
    tab = _tab(session)
    label_key = transfer_label_key(reference, session=tab)
    if label_key is None or not getattr(reference, "can_transfer_labels", True):
        return None
    max_distance = tab.get(state.MAX_DISTANCE)
    if not tab.get(state.LIMIT_DISTANCE):
        max_distance = None
    return {
        "run": run.cache_key,
        "label_key": label_key,
        "method": label_method(reference, session=tab)[0],
        "k": int(k),
        "min_confidence": float(tab.get(state.MIN_CONFIDENCE, 0.0)),
        "max_mapping_distance": None if max_distance is None else float(max_distance),
        "unknown_rate": float(tab.get(state.UNKNOWN_RATE, 0.05)),
    }


def _stored(part: str, key: dict | None, session: Mapping[str, Any] | None = None) -> Any:
    """Return the restored ``part`` ("clusters" or "labels") if computed under ``key``."""
    stored = _tab(session).get(state.STORED_RESULTS)
    if not stored or key is None or stored.get("key", {}).get(part) != key:
        return None
    return stored.get(part)


def cluster_codes(
    run: state.ProjectionRun, resolution: float, *, session: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Louvain cluster numbers (0 = largest); -1 for cells without an embedding."""
    stored = _stored("clusters", clusters_key(run, resolution), session)
    if stored is not None:
        return stored
    return cached.cached_louvain(
        run.cache_key, state.N_NEIGHBORS, float(resolution), knn_graph(run)
    )


def clusters(
    run: state.ProjectionRun,
    resolution: float,
    obs_names: pd.Index,
    *,
    session: Mapping[str, Any] | None = None,
) -> pd.Series:
    """Louvain cluster of every cell as text; cells that mapped nowhere are 'Unassigned'.

    'Unassigned' is the engine's one name for cells without an embedding (or a label),
    the same in the command line's files, the Dask path and the app's maps and tables.
    """
    codes = cluster_codes(run, resolution, session=session)
    out = np.where(codes >= 0, codes.astype(str), UNASSIGNED).astype(object)
    return pd.Series(out, index=obs_names, name="cluster")


def current_clusters(
    run: state.ProjectionRun,
    dataset: LoadedDataset,
    *,
    session: Mapping[str, Any] | None = None,
) -> pd.Series:
    """Clusters at the resolution chosen on the Clusters page (``session``: see labels_key)."""
    tab = _tab(session)
    return clusters(run, tab[state.RESOLUTION], dataset.adata.obs_names, session=tab)


def build_detection(dataset: LoadedDataset, reference_key: str, reference: Any) -> Any:
    """Detect the genome build of the uploaded peaks (cached; None if it cannot run)."""
    from scembed_core.errors import ScEmbedError

    uploaded = dataset.original or dataset
    try:
        return cached.cached_build_detection(
            uploaded.digest, reference_key, uploaded.adata, reference
        )
    except ScEmbedError:
        return None


def transfer_label_key(reference: Any, *, session: Mapping[str, Any] | None = None) -> str | None:
    """Return the reference obs column labels come from (session choice or default)."""
    keys = list(getattr(reference, "label_keys", []) or [])
    chosen = _tab(session).get(state.LABEL_KEY)
    if chosen in keys:
        return chosen
    return getattr(reference, "default_label_key", None) or (keys[0] if keys else None)


def chart_colors(reference: Any, label_key: str | None = None) -> dict[str, str]:
    """The label -> colour map every chart of this tab passes to ``figures.label_colors``.

    The reference's own map (its bundle's, or computed once on load: one label, one colour
    on every page), the lineage colours, and the user's names of the Annotation page's
    label map, each with the colour of the reference label it stands for.
    """
    from scembed_core import palette

    manifest = getattr(reference, "manifest", None) or {}
    base = {**palette.LINEAGE_COLORS, **(manifest.get("lineage_colors") or {})}
    key = label_key or transfer_label_key(reference)
    stored = manifest.get("label_colors") or {}
    if key is not None and (key in stored or _has_labels(reference)):
        from scembed_core.lineage import reference_label_colors

        base.update(reference_label_colors(reference, key))
    label_map = st.session_state.get(state.LABEL_MAP) or {}
    for ref in sorted(label_map, key=str):
        user = label_map[ref]
        if user not in (None, "") and str(ref) in base:
            base.setdefault(str(user), base[str(ref)])
    return base


def _has_labels(reference: Any) -> bool:
    """Whether ``reference`` (or its compact view) has labelled cells to colour."""
    return getattr(reference, "cells", None) is not None or bool(
        getattr(reference, "categories", None)
    )


def lineages(reference: Any, label_key: str | None = None) -> dict[str, str]:
    """Reference label -> lineage (the bundle's hierarchy, else guessed from the names).

    ``reference`` may be the compact view the Reference page draws first.
    """
    from scembed_core.lineage import reference_lineages

    key = label_key or transfer_label_key(reference)
    if key is None or not _has_labels(reference):
        return {}
    memo = getattr(reference, "memoized", None)
    if memo is None:
        return reference_lineages(reference, key)
    return dict(memo(("lineages", key), lambda: reference_lineages(reference, key)))


NO_TRUTH = state.NO_TRUTH  # the Annotation page's "no truth column" choice


def truth_column(obs: pd.DataFrame) -> str | None:
    """The column of the query scored against: the tab's choice, else the engine's guess.

    ``state.TRUTH_KEY`` is None until the user picks one (so a guess is never saved as a
    change); ``"(none)"`` means no scoring.
    """
    from scembed_core.io import guess_label_key

    chosen = st.session_state.get(state.TRUTH_KEY)
    if chosen == NO_TRUTH:
        return None
    if chosen is not None and chosen in obs.columns:
        return chosen
    return guess_label_key(obs)


def scoring_map(truth: pd.Series, predicted_names: list[str]) -> dict[str, str]:
    """Reference label -> the user's name: the tab's map over names matched automatically.

    Names that agree up to case and punctuation are paired without any action
    (:func:`scembed_core.labels.names.match_names`); the tab's saved map
    (``state.LABEL_MAP``, edited on the Annotation page) wins where it has an entry.
    """
    from scembed_core.labels.names import match_names

    auto = match_names(predicted_names, truth.dropna().astype(str).unique())
    saved = st.session_state.get(state.LABEL_MAP) or {}
    return {name: str(saved.get(name, auto.get(name, name))) for name in predicted_names}


def label_method(
    reference: Any, *, session: Mapping[str, Any] | None = None
) -> tuple[str, str | None]:
    """Resolve the label method that runs for this tab's choice (a note if it falls back)."""
    from scembed_core.labels.assign import resolve_label_method

    tab = _tab(session)
    chosen = tab.get(state.LABEL_METHOD) or "classifier"
    return resolve_label_method(reference, chosen, transfer_label_key(reference, session=tab))


def labels(
    run: state.ProjectionRun,
    reference: Any,
    obs_names: pd.Index,
    *,
    k: int = 15,
    session: Mapping[str, Any] | None = None,
) -> pd.DataFrame | None:
    """Transferred labels under the current thresholds, or None without reference labels."""
    key = labels_key(run, reference, k=k, session=session)
    if key is None:
        return None
    frame = _stored("labels", key, session)
    if frame is None:
        frame = cached.cached_transfer(
            run.cache_key,
            key["label_key"],
            key["method"],
            k,
            key["min_confidence"],
            key["max_mapping_distance"],
            np.asarray(run.projection.embedding),
            reference,
            getattr(run.projection, "neighbors", None),
            key["unknown_rate"],
            getattr(getattr(run.projection, "coverage", None), "n_regions_per_cell", None),
        )
    frame = frame.copy()
    frame.index = obs_names
    return frame


def hover_fields(
    obs_names: pd.Index, cluster: pd.Series, transferred: pd.DataFrame | None
) -> pd.DataFrame:
    """Hover columns for the maps: cell, label, confidence, cluster."""
    fields = pd.DataFrame({"cell": np.asarray(obs_names, dtype=object)})
    if transferred is not None:
        fields["label"] = transferred["label"].to_numpy()
        fields["confidence"] = transferred["confidence"].to_numpy(dtype=float)
    fields["cluster"] = cluster.to_numpy()
    return fields


def label_columns(obs: pd.DataFrame) -> list[str]:
    """Query obs columns that look like cell labels (few distinct text/categorical values)."""
    found = []
    n = len(obs)
    for col in obs.columns:
        values = obs[col]
        if pd.api.types.is_float_dtype(values):
            continue
        n_unique = values.nunique(dropna=True)
        if 2 <= n_unique <= min(MAX_LABEL_CATEGORIES, max(2, n // 2)):
            found.append(col)
    return found


def color_columns(obs: pd.DataFrame) -> list[str]:
    """Query obs columns usable to colour the map (labels and numeric values)."""
    cols = label_columns(obs)
    cols += [c for c in obs.columns if c not in cols and pd.api.types.is_numeric_dtype(obs[c])]
    return cols


# --- what the Export page writes -------------------------------------------------------------
def export_settings(dataset: LoadedDataset, reference_key: str, reference: Any) -> dict:
    """Read the settings the annotated file records from this tab's session state now.

    Deferred downloads run outside the script run, so the Export page reads them once here;
    ``tests/app/test_reproduce.py`` uses the same function.
    """
    max_distance = st.session_state.get(state.MAX_DISTANCE)
    return {
        "resolution": float(st.session_state[state.RESOLUTION]),
        "n_neighbors": state.N_NEIGHBORS,
        "label_key": transfer_label_key(reference),
        "label_method": st.session_state.get(state.LABEL_METHOD) or "classifier",
        "min_confidence": float(st.session_state.get(state.MIN_CONFIDENCE, 0.0)),
        "unknown_rate": st.session_state.get(state.UNKNOWN_RATE),
        "max_mapping_distance": max_distance
        if st.session_state.get(state.LIMIT_DISTANCE)
        else None,
        "detection": build_detection(dataset, reference_key, reference),
    }


def annotated(
    run: state.ProjectionRun,
    dataset: LoadedDataset,
    reference: Any,
    transferred: pd.DataFrame | None,
    settings: dict,
    *,
    counts: bool = True,
) -> Any:
    """Build the query with this tab's results under the engine's keys (the one writer)."""
    from scembed_app import exports  # plotly and anndata: only when a file is built

    codes = cluster_codes(run, settings["resolution"])
    return exports.annotated_adata(
        dataset.adata,
        reference,
        run.projection,
        codes,
        transferred,
        graph=knn_graph(run),
        counts=counts,
        **settings,
    )


def cluster_table(
    run: state.ProjectionRun, cluster: pd.Series, transferred: pd.DataFrame, reference: Any
) -> pd.DataFrame:
    """One row per cluster: majority label, agreement and the absent-type check.

    The engine's rule (:func:`scembed_core.labels.clusters.cluster_table`, what
    ``se.tl.annotate_clusters`` runs), with the projection's own 99th-percentile bar.
    """
    from scembed_core.labels.clusters import cluster_table as table_of

    threshold = getattr(run.projection, "mapping_distance_threshold", None)
    return table_of(cluster.to_numpy(), transferred, reference, distance_threshold=threshold)


def run_document(
    run: state.ProjectionRun, dataset: LoadedDataset, reference: Any, settings: dict
) -> dict:
    """``run.json`` for this tab's analysis (:func:`scembed_app.reproduce.run_spec`)."""
    params = reproduce.run_params(
        ev=run.projection.umap is not None,
        resolution=settings["resolution"],
        label_key=settings["label_key"],
        label_method=label_method(reference)[0],
        min_confidence=settings["min_confidence"],
        max_mapping_distance=settings["max_mapping_distance"],
        liftover=bool(st.session_state[state.LIFTOVER]),
        unknown_rate=settings.get("unknown_rate"),
    )
    doc = reproduce.run_spec(
        spec=st.session_state[state.REFERENCE_SPEC],
        reference=reference,
        dataset=dataset,
        params=params,
        hosted=deployment.is_hosted(),
        scoring=scoring_settings(dataset, reference, settings["label_key"]),
    )
    lifted = (dataset.liftover or {}).get("source_build")
    spec = str(st.session_state[state.REFERENCE_SPEC])
    # the dataset verdict (scembed_core.fit), for the record
    doc["fit"] = cached.cached_fit(dataset.digest, spec, lifted, dataset.adata, reference)
    return doc


def scoring_settings(dataset: LoadedDataset, reference: Any, label_key: str | None) -> dict | None:
    """``run.json``'s ``scoring``: the truth column and the label map (non-identity entries)."""
    truth_key = truth_column(dataset.adata.obs)
    if truth_key is None:
        return None
    names = []
    if getattr(reference, "can_transfer_labels", False):
        names = [str(n) for n in reference.label_counts(label_key).index]
    full = scoring_map(dataset.adata.obs[truth_key], names)
    return {"truth_key": truth_key, "label_map": {k: v for k, v in full.items() if k != v}}
