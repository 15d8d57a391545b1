"""Streamlit cache wrappers around engine calls (prefix ``cached_``).

* The reference is a shared, read-only object: ``st.cache_resource`` keyed on its spec.
* Per-upload results are keyed on the upload digest plus the reference key and the
  parameters that matter. Large immutable results (the peak coverage, the projections,
  the kNN graph) use ``st.cache_resource``: one shared object, never pickled or copied
  on a rerun, so callers must not mutate them (pages make new objects with
  ``dataclasses.replace``); small results (cluster numbers, label frames, tables) use
  ``st.cache_data``. Large inputs (AnnData, arrays, the reference) are
  passed as ``_underscore`` arguments so Streamlit does not hash them; the explicit key
  arguments stand for them.
* The stages run the engine's ``se.tl`` verbs, as the command line does: the query's
  kNN graph is ``tl.neighbors`` on the projected cells, cached per upload digest +
  reference with ``st.cache_resource`` (one shared, read-only object, never pickled);
  clusters are ``tl.cluster`` on a copy of it, so moving the resolution slider re-runs
  Louvain only, never the projection or the graph.

None of these functions draws anything: progress is shown by the page around each call
(Streamlit replays elements drawn inside a cached function, which would break for a
status container created outside it).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import state
from scembed_app.uploads import LoadedDataset, SpooledUpload, load_path, read_spooled
from scembed_core.errors import ReferenceBundleError

#: Per-upload entries expire after an hour so a long-running server does not hoard uploads.
UPLOAD_TTL = "1h"
RESOLUTION_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 2.0, 2.5, 3.0)

#: How often each projection function really ran (a cache miss), in this process. A
#: diagnostic: the workspace tests read it to check that a restored analysis is not recomputed.
COMPUTED: Counter[str] = Counter()
_COMPUTED_LOCK = threading.Lock()


def _computed(name: str) -> None:
    with _COMPUTED_LOCK:
        COMPUTED[name] += 1


# --- reference ------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the reference...", max_entries=4)
def cached_reference(spec: str, trust: bool) -> Any:
    """Load a reference bundle once per process (shared, never mutated)."""
    from scembed_core.reference import resolve_reference

    return resolve_reference(spec, trust=trust)


def load_reference_spec(spec: str, trust: bool) -> Any:
    """Load a reference by spec (``session:NAME`` from this tab, anything else cached)."""
    if spec.startswith("session:"):
        name = spec.removeprefix("session:")
        trained = st.session_state.get(state.TRAINED, {}).get(name)
        if trained is None:
            raise ReferenceBundleError(
                f"The reference {name!r} trained earlier is no longer in this browser tab "
                "(a reload starts a new session). Train it again or pick another reference."
            )
        return trained.reference
    return cached_reference(spec, trust)


def reference_key(spec: str, reference: Any) -> str:
    """Cache key of a reference: its spec plus its content fingerprint.

    Every per-dataset result cached for all sessions (``st.cache_data`` is global to the
    server) is keyed on this, so references that differ in any file (labels, vectors, map)
    never share an entry, whatever they are called.
    """
    return f"{spec}#{reference.fingerprint}"


def active_reference() -> tuple[str, Any]:
    """Return the reference chosen in this tab as ``(cache key, Reference)``."""
    spec = st.session_state.get(state.REFERENCE_SPEC, "default")
    if spec.startswith("session:"):
        trained = st.session_state.get(state.TRAINED, {}).get(spec.removeprefix("session:"))
        if trained is not None:
            return reference_key(trained.key, trained.reference), trained.reference
    trust = bool(st.session_state.get(state.TRUST_HUB, False))
    reference = load_reference_spec(spec, trust)
    return reference_key(spec, reference), reference


@st.cache_resource(show_spinner=False)
def start_kernel_warmup() -> threading.Thread:
    """Compile (or load from numba's disk cache) the EV-projection kernels in the background.

    Started once per server process, after the first page is drawn (by the router), and
    :data:`~scembed_app.state.WARMUP_DELAY_S` later so that the browser paints that page
    first; a page that needs the kernels ``join()``s the thread, which returns at once when
    the warm-up is done.
    """
    import time

    def warm() -> None:
        from scembed_core.project import warm_ev

        time.sleep(state.WARMUP_DELAY_S)
        warm_ev()

    thread = threading.Thread(target=warm, name="scembed-warm-kernels", daemon=True)
    thread.start()
    return thread


# --- per upload -------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=2)
def cached_demo_dataset() -> LoadedDataset:
    """Load the bundled demo query (a copy per caller)."""
    from scembed_core.reference import DEMO_QUERY_PATH

    return load_path(DEMO_QUERY_PATH, name="demo: " + str(DEMO_QUERY_PATH).rsplit("/", 1)[-1])


def read_upload(spool: SpooledUpload, reference: Any) -> LoadedDataset:
    """Parse a spooled upload; not cached, so its data leave the server with the session.

    Fragments are counted over the universe, lifted onto the reference's build first when
    they are confidently on another. The page keeps the result in its session (a shared
    ``st.cache_data`` kept four uploads for an hour after their tabs closed).
    """
    return read_spooled(spool, universe=reference.model.universe, reference=reference)


@st.cache_resource(show_spinner=False, max_entries=16, ttl=UPLOAD_TTL)
def cached_coverage(digest: str, reference_key: str, _adata: Any, _reference: Any) -> Any:
    """Peak -> universe mapping summary before projecting (the QC the Data page shows)."""
    from scembed_core.project import compute_coverage

    return compute_coverage(_adata, _reference)


@st.cache_data(show_spinner=False, max_entries=16, ttl=UPLOAD_TTL)
def cached_build_detection(digest: str, reference_key: str, _adata: Any, _reference: Any) -> Any:
    """Detect the query's likely genome build, against the reference universe (as uploaded)."""
    from scembed_core.liftover import detect_build
    from scembed_core.project import regions_of

    return detect_build(
        regions_of(_adata),
        _reference.model.universe,
        _reference.genome,
        declared=_adata.uns.get("genome"),
    )


@st.cache_data(show_spinner=False, max_entries=4, ttl=UPLOAD_TTL)
def cached_lift_query(
    digest: str, reference_key: str, source_build: str, _adata: Any, _reference: Any
) -> Any:
    """Lift the query from ``source_build`` onto the reference's build (a new AnnData).

    Keyed on the upload digest, the reference and the build lifted from: the target build
    is the reference's.
    """
    from scembed_core.liftover.query import prepare_query

    return prepare_query(_adata, _reference, query_genome=source_build, liftover=True)


@st.cache_resource(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_e_project(digest: str, reference_key: str, _adata: Any, _reference: Any) -> Any:
    """E-projection: pooled region vectors per cell, plus the nearest reference cells."""
    from scembed_core.project import project

    _computed("e_project")
    coverage = cached_coverage(digest, reference_key, _adata, _reference)
    return project(_adata, _reference, ev=False, coverage=coverage)


@st.cache_resource(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_ev_project(
    run_key: str,
    n_frames: int,
    _embedding: np.ndarray,
    _reference: Any,
    _neighbors: tuple[np.ndarray, np.ndarray] | None,
) -> Any:
    """EV-projection onto the reference map, with ``n_frames`` frames of a sample moving.

    Returns a :class:`scembed_core.evmap.MapTransform`; ``_neighbors`` are the reference
    neighbours found by the E-projection (``run_key`` covers them).
    """
    from scembed_core.project import ev_transform

    _computed("ev_project")
    return ev_transform(_embedding, _reference, neighbors=_neighbors, n_frames=n_frames)


@st.cache_data(show_spinner=False, max_entries=16, ttl=UPLOAD_TTL)
def cached_transfer(
    run_key: str,
    label_key: str,
    method: str,
    k: int,
    min_confidence: float,
    max_mapping_distance: float | None,
    _embedding: np.ndarray,
    _reference: Any,
    _neighbors: tuple[np.ndarray, np.ndarray] | None,
    unknown_rate: float | None = None,
    _n_regions: np.ndarray | None = None,
) -> pd.DataFrame:
    """Labels with class probabilities (the engine's one rule) under the thresholds.

    ``method`` is ``"classifier"`` or ``"knn"`` (see
    :func:`scembed_core.labels.assign.assign_labels`). ``_neighbors`` are the reference
    neighbours found during projection, so changing a threshold re-labels without
    searching the index again.
    """
    from scembed_core.labels.assign import assign_labels

    _computed("transfer")
    return assign_labels(
        _embedding,
        _reference,
        method=method,
        label_key=label_key,
        k=k,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        neighbors=_neighbors,
        warn=False,
        n_regions=_n_regions,
        unknown_rate=unknown_rate,
    )


@st.cache_data(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_fit(
    digest: str, reference_key: str, lifted_from: str | None, _adata: Any, _reference: Any
) -> dict:
    """The dataset verdict before projection (:func:`scembed_core.fit.assess_fit`).

    The coverage and the build detection come from their caches (the Data page computed
    them already): computing them again here cost a second copy of the upload's memory.
    """
    from scembed_core.fit import assess_fit

    coverage = cached_coverage(digest, reference_key, _adata, _reference)
    detection = None
    if lifted_from is None:
        detection = cached_build_detection(digest, reference_key, _adata, _reference)
    return assess_fit(
        _adata, _reference, lifted_from=lifted_from, coverage=coverage, detection=detection
    )


@st.cache_resource(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_neighbors(run_key: str, n_neighbors: int, use_rep: str, _space: np.ndarray) -> Any:
    """Compute the projected cells' kNN graph (``se.tl.neighbors``), shared and read-only.

    An AnnData holding the analysis space (``obsm[use_rep]``, the key the annotated file
    has it under) and the graph (``obsp``, ``uns["neighbors"]``); callers cluster a copy
    of it (:func:`cached_louvain`), never the object itself.
    """
    import anndata as ad

    from scembed_core import tl

    space = np.asarray(_space)
    holder = ad.AnnData(obs=pd.DataFrame(index=np.arange(len(space)).astype(str)))
    holder.obsm[use_rep] = space
    tl.neighbors(holder, n_neighbors, use_rep=use_rep, random_state=0)
    return holder


@st.cache_data(show_spinner=False, max_entries=64, ttl=UPLOAD_TTL)
def cached_louvain(run_key: str, n_neighbors: int, resolution: float, _graph: Any) -> np.ndarray:
    """Louvain clusters at one resolution (``se.tl.cluster`` on the cached graph)."""
    from scembed_core import results, tl

    _computed("louvain")
    out = tl.cluster(_graph, resolution, random_state=0, copy=True)
    return results.cluster_codes(out)


@st.cache_data(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_resolution_sweep(run_key: str, n_neighbors: int, _graph: Any) -> pd.DataFrame:
    """Count the clusters over a grid of resolutions (the curve on the Clusters page)."""
    from scembed_core.cluster import n_clusters_of

    rows = [
        {
            "resolution": r,
            "n_clusters": n_clusters_of(cached_louvain(run_key, n_neighbors, r, _graph)),
        }
        for r in RESOLUTION_GRID
    ]
    return pd.DataFrame(rows)


@st.cache_data(show_spinner=False, max_entries=16, ttl=UPLOAD_TTL)
def cached_find_resolution(run_key: str, n_neighbors: int, n_clusters: int, _graph: Any) -> Any:
    """Resolution search for ``n_clusters`` clusters (``se.tl.cluster(n_clusters=...)``)."""
    from scembed_core import results, tl
    from scembed_core.cluster import ResolutionSearch, n_clusters_of

    out = tl.cluster(_graph, n_clusters=n_clusters, random_state=0, copy=True)
    entry = out.uns["scembed"][results.CLUSTER]
    codes = results.cluster_codes(out)
    resolution = float(entry["params"]["resolution"])
    found = n_clusters_of(codes)
    return ResolutionSearch(resolution, codes, found, n_clusters, entry["resolution_curve"])


@st.cache_data(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_embedding_umap(run_key: str, _embedding: np.ndarray) -> np.ndarray:
    """2-D UMAP of the query's own E-projection embedding; NaN rows stay NaN.

    A display-only layout of the query on its own (not the reference map).
    """
    from scembed_core.project import embedding_umap

    return embedding_umap(_embedding)


@st.cache_data(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def cached_embedding_layout(run_key: str, n_neighbors: int, _graph: Any) -> np.ndarray:
    """Spectral layout of the query's own kNN graph (the clusters'; no fit, NaN rows NaN).

    ``_graph`` is :func:`cached_neighbors`' AnnData. The Project page's "Embedding layout"
    tab: a fraction of a second where a UMAP fit (:func:`cached_embedding_umap`) takes
    seconds to minutes.
    """
    from scembed_core.layout import graph_layout

    entry = _graph.uns["neighbors"]
    space = np.asarray(_graph.obsm[entry["params"]["use_rep"]])
    connectivities = _graph.obsp[entry.get("connectivities_key", "connectivities")]
    return graph_layout(connectivities, np.isfinite(space).all(axis=1))
