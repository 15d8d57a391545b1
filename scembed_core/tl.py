"""AnnData-first tools, as scanpy users expect: ``se.tl.project(adata, reference)`` and so on.

Each verb takes the query ``AnnData`` first, writes its results under documented keys and
records the parameters that made them in ``adata.uns["scembed"][<verb>]``, like
``scanpy.tl.leiden`` does. The command line's
:func:`scembed_core.pipeline.run_pipeline` is these verbs in a row, so the results are
the same.

Keys written
------------
Every key is written by :mod:`scembed_core.results` (documented there), the one writer
also used by the app's Export page and the Dask path. In short:

``project``
    ``obsm["X_scembed"]`` (E-projection), ``obsm["X_scembed_whitened"]`` (analysis space),
    ``obsm["X_scembed_umap"]`` (EV-projection), ``obsm["scembed_neighbors"]`` and
    ``obsm["scembed_neighbor_distances"]`` (nearest reference cells), per-cell coverage and
    mapping-distance columns in ``obs``; ``uns["scembed"]["coverage"]`` and ``["timings"]``.
``cluster``
    ``obs[key_added]`` (default ``"scembed_cluster"``, categorical; ``"Unassigned"`` for
    cells without an embedding).
``transfer_labels``
    ``obs[key_added]`` and ``obs[key_added + "_predicted" | "_confidence" | "_similarity"]``,
    ``obsm["scembed_label_probabilities"]`` with the class order in
    ``uns["scembed"]["label_classes"]``.
``annotate_clusters``
    ``obs["scembed_cluster_label"]``, ``obs["scembed_cluster_possibly_absent"]`` and the
    table in ``uns["scembed"]["cluster_table"]``.

``rank_regions``, ``gene_activity``, ``second_opinion``
    The biological evidence verbs of :mod:`scembed_core.evidence` (documented there):
    ``uns["rank_genes_groups"]`` and ``uns["scembed"]["markers"]``; a cells x genes
    AnnData; ``second_opinion``/``markers_agree`` columns in the cluster table.

The run's settings are summarised in ``uns["scembed"]["params"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import results
from ._types import ProgressCallback
from .errors import ParameterError

if TYPE_CHECKING:
    import anndata as ad

    from .reference import Reference

from .evidence import gene_activity, rank_regions, second_opinion

__all__ = [
    "project",
    "cluster",
    "transfer_labels",
    "annotate_clusters",
    "rank_regions",
    "gene_activity",
    "second_opinion",
]


def _target(adata: ad.AnnData, copy: bool) -> ad.AnnData:
    return adata.copy() if copy else adata


def project(
    adata: ad.AnnData,
    reference: Reference,
    *,
    ev: bool = True,
    k_neighbors: int = 15,
    query_genome: str | None = None,
    progress: ProgressCallback | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Embed the cells with the reference's region vectors and place them on its map.

    Parameters
    ----------
    adata
        Query cells x peaks with peak coordinates in ``var`` (as :func:`scembed_core.read`
        gives them), on the reference's genome build.
    reference
        A loaded reference (:func:`scembed_core.load_reference`).
    ev
        Also place the cells on the reference map (needs a reference with a map).
    k_neighbors
        Nearest reference cells kept for the mapping distance and for label transfer.
    query_genome
        The build the peaks were on before any liftover, recorded in the parameters
        (default: the reference's).
    progress
        ``progress(fraction, message)`` callback.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy`` is True, else None (``adata`` is updated in place).
    """
    from .project import project as _project

    out = _target(adata, copy)
    projection = _project(
        out,
        reference,
        ev=ev and reference.can_ev_project,
        k_neighbors=k_neighbors,
        progress=progress,
    )
    results.write_projection(
        out, projection, reference, k_neighbors=k_neighbors, query_genome=query_genome
    )
    return out if copy else None


def _analysis(adata: ad.AnnData) -> np.ndarray:
    for key in (results.ANALYSIS, results.EMBEDDING):
        if key in adata.obsm:
            return np.asarray(adata.obsm[key])
    raise ParameterError("No scEmbed embedding in obsm: run scembed_core.tl.project first.")


def cluster(
    adata: ad.AnnData,
    resolution: float | None = None,
    n_clusters: int | None = None,
    *,
    method: str = "louvain",
    n_neighbors: int = 15,
    random_state: int = 0,
    key_added: str = results.CLUSTER,
    copy: bool = False,
) -> ad.AnnData | None:
    """Louvain (or Leiden) clusters on the cosine kNN graph of the projected cells.

    Parameters
    ----------
    adata
        A query projected by :func:`project`.
    resolution
        Community resolution (default 1.0); ignored when ``n_clusters`` is given.
    n_clusters
        Search the resolution that gives this many clusters (the paper's search); the
        search's curve is stored in ``uns["scembed"]["cluster"]["resolution_curve"]``.
    method
        ``"louvain"`` or ``"leiden"``.
    n_neighbors
        Neighbours per cell in the graph.
    random_state
        Seed of the community detection.
    key_added
        ``obs`` column written.
    copy
        Return a modified copy instead of writing into ``adata``.
    """
    from .cluster import build_knn_graph, cluster_graph, find_resolution

    out = _target(adata, copy)
    graph = build_knn_graph(_analysis(out), n_neighbors, seed=random_state)
    curve = None
    if n_clusters is not None:
        search = find_resolution(graph, n_clusters, method=method, seed=random_state)
        codes, resolution, curve = search.labels, search.resolution, search.curve
    else:
        resolution = 1.0 if resolution is None else float(resolution)
        codes = cluster_graph(graph, resolution, method=method, seed=random_state)
    params = results.cluster_params(
        method=method,
        resolution=resolution,
        n_clusters_requested=n_clusters,
        n_neighbors=n_neighbors,
        random_state=random_state,
        key_added=key_added,
    )
    results.write_clusters(out, codes, params)
    if curve is not None:
        out.uns["scembed"]["cluster"]["resolution_curve"] = curve
    return out if copy else None


def transfer_labels(
    adata: ad.AnnData,
    reference: Reference,
    *,
    method: str = "classifier",
    label_key: str | None = None,
    k: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    key_added: str = results.LABEL,
    warn: bool = True,
    copy: bool = False,
) -> ad.AnnData | None:
    """Label the projected cells from the reference (the engine's one label rule).

    Parameters
    ----------
    adata
        A query projected onto ``reference`` by :func:`project`.
    reference
        The same reference.
    method
        ``"classifier"`` (the reference's label model; the kNN vote with a warning when it
        has none) or ``"knn"``.
    label_key
        Reference label column (default: its first).
    k, min_confidence, max_mapping_distance
        As :func:`scembed_core.labels.assign.assign_labels`.
    key_added
        ``obs`` column of the labels (``<key_added>_confidence`` and others beside it).
    warn
        Warn when the classifier was asked for but the kNN vote runs (the note is also
        recorded in the parameters).
    copy
        Return a modified copy instead of writing into ``adata``.
    """
    from .labels.assign import assign_labels

    out = _target(adata, copy)
    if results.EMBEDDING not in out.obsm:
        raise ParameterError("No obsm['X_scembed']: run scembed_core.tl.project first.")
    projected = out.uns.get("scembed", {}).get("project", {}).get("params", {})
    fingerprint = projected.get("reference_fingerprint")
    if fingerprint is not None and fingerprint != reference.fingerprint:
        raise ParameterError(
            "These cells were projected onto another reference; project them onto this one "
            "first (scembed_core.tl.project)."
        )
    neighbors = None
    if "scembed_neighbors" in out.obsm and out.obsm["scembed_neighbors"].shape[1] >= k:
        neighbors = (
            np.asarray(out.obsm["scembed_neighbors"]),
            np.asarray(out.obsm["scembed_neighbor_distances"]),
        )
    params = results.label_params(
        reference,
        method=method,
        label_key=label_key,
        k=k,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        key_added=key_added,
    )
    labels = assign_labels(
        np.asarray(out.obsm[results.EMBEDDING]),
        reference,
        method=method,
        label_key=label_key,
        k=k,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        neighbors=neighbors,
        warn=warn,
    )
    labels.index = out.obs_names
    results.write_labels(out, labels, params)
    return out if copy else None


def annotate_clusters(
    adata: ad.AnnData,
    reference: Reference | None = None,
    *,
    cluster_key: str = results.CLUSTER,
    label_key: str = results.LABEL,
    copy: bool = False,
) -> ad.AnnData | None:
    """Majority label per cluster, with clusters possibly absent from the reference flagged.

    Parameters
    ----------
    adata
        A query with clusters (:func:`cluster`) and labels (:func:`transfer_labels`).
    reference
        Supplies the reference's own 99th percentile of mapping distances for the
        absent-type check (without it no cluster is flagged).
    cluster_key, label_key
        The ``obs`` columns to read.
    copy
        Return a modified copy instead of writing into ``adata``.
    """
    from .labels.assign import cluster_table

    out = _target(adata, copy)
    missing = [key for key in (cluster_key, label_key) if key not in out.obs]
    if missing:
        raise ParameterError(
            f"obs has no {missing}: run scembed_core.tl.cluster and tl.transfer_labels first."
        )
    nan = pd.Series(np.nan, index=out.obs_names)
    labels = pd.DataFrame(
        {
            "label": out.obs[label_key].astype(str).to_numpy(),
            "confidence": out.obs.get(f"{label_key}_confidence", nan).to_numpy(),
            "mapping_distance": out.obs.get("scembed_mapping_distance", nan).to_numpy(),
        },
        index=out.obs_names,
    )
    clusters = out.obs[cluster_key].astype(str).to_numpy()
    k = out.uns.get("scembed", {}).get("transfer_labels", {}).get("params", {}).get("k", 15)
    table = cluster_table(clusters, labels, reference, k=int(k))
    results.write_cluster_table(out, table, cluster_key=cluster_key, label_key=label_key)
    return out if copy else None
