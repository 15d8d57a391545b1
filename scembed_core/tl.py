"""AnnData-first tools, as scanpy users expect: ``se.tl.project(adata, reference)`` and so on.

Each verb takes the query ``AnnData`` first, writes its results under documented keys and
records the parameters that made them in ``adata.uns["scembed"][key_added]`` (the
projection in ``uns["scembed"]["project"]``), as ``scanpy.tl.leiden`` records
``uns[key_added]["params"]``. The command line (:func:`scembed_core.pipeline.run_pipeline`),
the app (through its cache layer, :mod:`scembed_app.cached`) and the Dask path
(:func:`scembed_core.atlas.cluster_large`) call these verbs, so their results agree.

Keys written
------------
Every key is written by :mod:`scembed_core.results` (documented there), the one writer.
In short:

``project``
    ``obsm["X_scembed"]`` (E-projection), ``obsm["X_scembed_whitened"]`` (analysis space),
    ``obsm["X_scembed_umap"]`` (EV-projection), ``obsm["scembed_neighbors"]`` and
    ``obsm["scembed_neighbor_distances"]`` (nearest reference cells), per-cell coverage and
    mapping-distance columns in ``obs``; ``uns["scembed"]["coverage"]`` and ``["timings"]``.
``neighbors``
    The query's own cosine kNN graph in scanpy's layout: ``obsp["connectivities"]``,
    ``obsp["distances"]`` and ``uns["neighbors"]["params"]`` (or ``<key>_...``).
``cluster``
    ``obs[key_added]`` (default ``"scembed_cluster"``, categorical; ``"Unassigned"`` for
    cells without an embedding), from the stored graph.
``transfer_labels``
    ``obs[key_added]`` and ``obs[key_added + "_predicted" | "_confidence" | "_similarity"]``,
    ``obsm[key_added + "_probabilities"]``.
``annotate_clusters``
    ``obs[<cluster_key>_label]``, ``obs[<cluster_key>_possibly_absent]`` and the table in
    ``uns["scembed"][<cluster_key>_label]["cluster_table"]``.

The run's settings are summarised in ``uns["scembed"]["params"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from . import results
from ._types import ProgressCallback
from .errors import ParameterError, renamed_keyword

if TYPE_CHECKING:
    import anndata as ad

    from .reference import Reference

__all__ = ["project", "neighbors", "cluster", "transfer_labels", "annotate_clusters"]

#: The graph key of :func:`neighbors` and :func:`cluster` when none is given (scanpy's).
NEIGHBORS = "neighbors"


def _target(adata: ad.AnnData, copy: bool) -> ad.AnnData:
    return adata.copy() if copy else adata


def project(
    adata: ad.AnnData,
    reference: Reference,
    *,
    ev: bool = True,
    n_neighbors: int = 15,
    query_genome: str | None = None,
    progress: ProgressCallback | None = None,
    copy: bool = False,
    k_neighbors: int | None = None,
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
    n_neighbors
        Nearest reference cells kept for the mapping distance and for label transfer.
    query_genome
        The build the peaks were on before any liftover, recorded in the parameters
        (default: the reference's).
    progress
        ``progress(fraction, message)`` callback.
    copy
        Return a modified copy instead of writing into ``adata``.
    k_neighbors
        Deprecated name of ``n_neighbors``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None. Sets ``obsm["X_scembed"]``,
        ``obsm["X_scembed_whitened"]`` (with a whitening), ``obsm["X_scembed_umap"]`` (with
        ``ev``), ``obsm["scembed_neighbors"]``/``["scembed_neighbor_distances"]``,
        ``obs["scembed_n_regions" | "scembed_unmapped" | "scembed_mapping_distance" |
        "scembed_mapping_outlier"]`` and ``uns["scembed"]["project"]["params"]``.

    Examples
    --------
    >>> import scembed_core as se
    >>> reference = se.load_reference("default")  # doctest: +SKIP
    >>> adata = se.read("query.h5ad")  # doctest: +SKIP
    >>> se.tl.project(adata, reference)  # doctest: +SKIP
    >>> adata.obsm["X_scembed_umap"].shape  # doctest: +SKIP
    (1550, 2)
    """
    from .project import project as _project

    n_neighbors = int(renamed_keyword("k_neighbors", k_neighbors, "n_neighbors", n_neighbors, 15))
    from .io._normalize import check_count_values

    check_count_values(adata.X, "adata.X")
    out = _target(adata, copy)
    projection = _project(
        out,
        reference,
        ev=ev and reference.can_ev_project,
        k_neighbors=n_neighbors,
        progress=progress,
    )
    results.write_projection(
        out, projection, reference, n_neighbors=n_neighbors, query_genome=query_genome
    )
    return out if copy else None


def _analysis_key(adata: ad.AnnData) -> str:
    for key in (results.ANALYSIS, results.EMBEDDING):
        if key in adata.obsm:
            return key
    raise ParameterError("No scEmbed embedding in obsm: run scembed_core.tl.project first.")


def neighbors(
    adata: ad.AnnData,
    n_neighbors: int = 15,
    *,
    use_rep: str | None = None,
    random_state: int = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Compute the cosine kNN graph of the projected cells and store it as scanpy does.

    Parameters
    ----------
    adata
        A query projected by :func:`project`.
    n_neighbors
        Neighbours per cell (capped at the number of other embedded cells).
    use_rep
        ``obsm`` key of the space searched (default: ``X_scembed_whitened`` when present,
        else ``X_scembed``, the space labels and clusters use).
    random_state
        Seed of the approximate index used on large data (exact search below 20,000 cells).
    key_added
        None: ``obsp["distances"]``, ``obsp["connectivities"]`` and ``uns["neighbors"]``
        (scanpy's names, so ``scanpy.tl.leiden`` can read the graph too); else
        ``obsp["<key_added>_distances"]``, ``obsp["<key_added>_connectivities"]`` and
        ``uns[key_added]``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None. Cells without an embedding have no
        edges; ``uns[key]["params"]`` holds ``n_neighbors``, ``use_rep``, ``metric``,
        ``method`` and ``random_state``.

    Examples
    --------
    >>> import scembed_core as se
    >>> se.tl.neighbors(adata, n_neighbors=15)  # doctest: +SKIP
    >>> adata.obsp["connectivities"]  # doctest: +SKIP
    """
    from .cluster import knn_matrices

    out = _target(adata, copy)
    use_rep = use_rep or _analysis_key(out)
    if use_rep not in out.obsm:
        raise ParameterError(f"obsm has no {use_rep!r}; choose one of {list(out.obsm)}.")
    space = np.asarray(out.obsm[use_rep])
    distances, connectivities = knn_matrices(space, n_neighbors, seed=random_state)
    params = {
        "n_neighbors": int(n_neighbors),
        "method": "scembed",
        "metric": "cosine",
        "use_rep": use_rep,
        "random_state": int(random_state),
    }
    results.write_neighbors(out, distances, connectivities, params, key_added=key_added)
    return out if copy else None


def _stored_graph(adata: ad.AnnData, neighbors_key: str | None) -> tuple[object, dict]:
    """Build the igraph graph of the stored kNN graph under ``neighbors_key``; its params."""
    from .cluster import graph_from_connectivities

    entry = adata.uns[neighbors_key or NEIGHBORS]
    params = dict(entry.get("params", {}))
    connectivities = adata.obsp[entry.get("connectivities_key", "connectivities")]
    use_rep = params.get("use_rep")
    if use_rep in adata.obsm:
        valid = np.isfinite(np.asarray(adata.obsm[use_rep])).all(axis=1)
    else:  # a graph of another tool: cells with an edge are its vertices
        valid = np.diff(connectivities.tocsr().indptr) > 0
    return graph_from_connectivities(connectivities, valid), params


def cluster(
    adata: ad.AnnData,
    resolution: float | None = None,
    n_clusters: int | None = None,
    *,
    method: Literal["louvain", "leiden"] = "louvain",
    n_neighbors: int | None = None,
    random_state: int = 0,
    neighbors_key: str | None = None,
    key_added: str = results.CLUSTER,
    copy: bool = False,
) -> ad.AnnData | None:
    """Louvain (or Leiden) clusters of the stored kNN graph of the projected cells.

    Reads the graph :func:`neighbors` stored (as ``scanpy.tl.louvain`` reads
    ``obsp``); when there is none it is computed first with ``n_neighbors`` (default 15)
    and stored.

    Parameters
    ----------
    adata
        A query projected by :func:`project`.
    resolution
        Community resolution (default 1.0); ignored when ``n_clusters`` is given.
    n_clusters
        Search the resolution that gives this many clusters (the paper's search); the
        search's curve is stored in ``uns["scembed"][key_added]["resolution_curve"]``.
    method
        ``"louvain"`` or ``"leiden"``.
    n_neighbors
        Neighbours per cell of the graph when it has to be computed. With a stored graph
        of another ``n_neighbors`` this is an error: run :func:`neighbors` again.
    random_state
        Seed of the community detection (and of a graph computed here).
    neighbors_key
        The stored graph (None: ``uns["neighbors"]``, as :func:`neighbors` writes it).
    key_added
        ``obs`` column written; the parameters go to ``uns["scembed"][key_added]``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None. Sets ``obs[key_added]`` (categorical,
        clusters numbered by size, ``"Unassigned"`` for cells without an embedding) and
        ``uns["scembed"][key_added]["params"]`` (``method``, ``resolution``,
        ``n_clusters_requested``, ``n_neighbors``, ``random_state``, ``neighbors_key``).

    Examples
    --------
    >>> import scembed_core as se
    >>> se.tl.neighbors(adata)  # doctest: +SKIP
    >>> se.tl.cluster(adata, resolution=0.8)  # doctest: +SKIP
    >>> se.tl.cluster(adata, n_clusters=10, key_added="k10")  # doctest: +SKIP
    >>> adata.uns["scembed"]["k10"]["params"]["resolution"]  # doctest: +SKIP
    """
    from .cluster import cluster_graph, find_resolution

    out = _target(adata, copy)
    stored = (neighbors_key or NEIGHBORS) in out.uns
    if not stored:
        neighbors(out, n_neighbors or 15, random_state=random_state, key_added=neighbors_key)
    graph, graph_params = _stored_graph(out, neighbors_key)
    graph_k = int(graph_params.get("n_neighbors", n_neighbors or 15))
    if n_neighbors is not None and graph_k != n_neighbors:
        raise ParameterError(
            f"The stored graph ({neighbors_key or NEIGHBORS!r}) has {graph_k} neighbours per "
            f"cell, not {n_neighbors}: run scembed_core.tl.neighbors(adata, "
            f"n_neighbors={n_neighbors}) first, or leave n_neighbors out."
        )
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
        n_neighbors=graph_k,
        random_state=random_state,
        key_added=key_added,
        neighbors_key=neighbors_key,
    )
    entry = results.write_clusters(out, codes, params)
    if curve is not None:
        entry["resolution_curve"] = curve
    return out if copy else None


def transfer_labels(
    adata: ad.AnnData,
    reference: Reference,
    *,
    method: Literal["classifier", "knn"] = "classifier",
    label_key: str | None = None,
    n_neighbors: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    key_added: str = results.LABEL,
    warn: bool = True,
    unknown_rate: float | None = None,
    copy: bool = False,
    k: int | None = None,
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
    n_neighbors
        Nearest reference cells of the vote, the classifier's blend and the mapping
        distance (the projection's neighbours are reused when it kept as many).
    min_confidence
        Cells whose top class probability is below this become ``"Unassigned"``.
    max_mapping_distance
        Cells farther from their neighbours than this become ``"Unassigned"``.
    key_added
        ``obs`` column of the labels (``<key_added>_confidence`` and others beside it).
    warn
        Warn when the classifier was asked for but the kNN vote runs (the note is also
        recorded in the parameters).
    unknown_rate
        Strictness of the reference's calibrated Unknown rule (share of known cells it
        may call ``"Unknown"``; None: the calibrated rate, 0: off). Cells are judged at
        their own coverage (``obs["scembed_n_regions"]``).
    copy
        Return a modified copy instead of writing into ``adata``.
    k
        Deprecated name of ``n_neighbors``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None. Sets ``obs[key_added]`` (after the
        thresholds), ``obs[key_added + "_predicted" | "_confidence" | "_similarity"]``,
        the mapping distance the thresholds saw, ``obsm[key_added + "_probabilities"]``
        and ``uns["scembed"][key_added]`` (``params``: the method that ran and the one
        asked for, with the note; ``classes``: the probabilities' column order).

    Examples
    --------
    >>> import scembed_core as se
    >>> se.tl.transfer_labels(adata, reference, min_confidence=0.5)  # doctest: +SKIP
    >>> adata.obs["scembed_label"].value_counts()  # doctest: +SKIP
    """
    from .labels.assign import assign_labels, resolve_label_method

    n_neighbors = int(renamed_keyword("k", k, "n_neighbors", n_neighbors, 15))
    out = _target(adata, copy)
    if results.EMBEDDING not in out.obsm:
        raise ParameterError("No obsm['X_scembed']: run scembed_core.tl.project first.")
    projected = out.uns.get("scembed", {}).get(results.PROJECT, {}).get("params", {})
    fingerprint = projected.get("reference_fingerprint")
    if fingerprint is not None and fingerprint != reference.fingerprint:
        raise ParameterError(
            "These cells were projected onto another reference; project them onto this one "
            "first (scembed_core.tl.project)."
        )
    found = None
    if "scembed_neighbors" in out.obsm and out.obsm["scembed_neighbors"].shape[1] >= n_neighbors:
        found = (
            np.asarray(out.obsm["scembed_neighbors"]),
            np.asarray(out.obsm["scembed_neighbor_distances"]),
        )
    label_key = label_key or reference.default_label_key
    used, note = resolve_label_method(reference, method, label_key)
    n_regions = out.obs["scembed_n_regions"].to_numpy() if "scembed_n_regions" in out.obs else None
    labels = assign_labels(
        np.asarray(out.obsm[results.EMBEDDING]),
        reference,
        method=method,
        label_key=label_key,
        k=n_neighbors,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        neighbors=found,
        warn=warn,
        n_regions=n_regions,
        unknown_rate=unknown_rate,
    )
    labels.index = out.obs_names
    params = results.label_params(
        method=used,
        method_requested=method,
        note=note,
        label_key=label_key,
        n_neighbors=n_neighbors,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        key_added=key_added,
    )
    params["unknown_rate"] = None if unknown_rate is None else float(unknown_rate)
    results.write_labels(out, labels, params)
    return out if copy else None


def annotate_clusters(
    adata: ad.AnnData,
    reference: Reference | None = None,
    *,
    cluster_key: str = results.CLUSTER,
    label_key: str = results.LABEL,
    key_added: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Majority label per cluster, with clusters possibly absent from the reference flagged.

    Parameters
    ----------
    adata
        A query with clusters (:func:`cluster`) and labels (:func:`transfer_labels`).
    reference
        Supplies the reference's own 99th percentile of mapping distances for the
        absent-type check when the projection did not record it (without either, no
        cluster is flagged).
    cluster_key, label_key
        The ``obs`` columns to read (the ``key_added`` of :func:`cluster` and
        :func:`transfer_labels`).
    key_added
        ``obs`` column of each cell's cluster label (default ``<cluster_key>_label``).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None. Sets ``obs[key_added]``,
        ``obs[<cluster_key>_possibly_absent]`` and ``uns["scembed"][key_added]``
        (``params`` and ``cluster_table``: ``cluster``, ``label``, ``agreement``,
        ``n_cells``, ``median_confidence``, ``median_mapping_distance``,
        ``possibly_absent``).

    Examples
    --------
    >>> import scembed_core as se
    >>> se.tl.annotate_clusters(adata, reference)  # doctest: +SKIP
    >>> adata.uns["scembed"]["scembed_cluster_label"]["cluster_table"]  # doctest: +SKIP
    """
    from .labels.clusters import cluster_table

    out = _target(adata, copy)
    missing = [key for key in (cluster_key, label_key) if key not in out.obs]
    if missing:
        raise ParameterError(
            f"obs has no {missing}: run scembed_core.tl.cluster and tl.transfer_labels first."
        )
    uns = out.uns.get("scembed", {})
    nan = pd.Series(np.nan, index=out.obs_names)
    distance = out.obs.get(results.distance_column(label_key), nan)
    labels = pd.DataFrame(
        {
            "label": out.obs[label_key].astype(str).to_numpy(),
            "confidence": out.obs.get(f"{label_key}_confidence", nan).to_numpy(),
            "mapping_distance": distance.to_numpy(),
        },
        index=out.obs_names,
    )
    clusters = out.obs[cluster_key].astype(str).to_numpy()
    label_params = (uns.get(label_key) or {}).get("params", {})
    k = int(label_params.get("n_neighbors", 15))
    project_params = (uns.get(results.PROJECT) or {}).get("params", {})
    threshold = None
    if int(project_params.get("n_neighbors", -1)) == k:
        threshold = project_params.get("mapping_distance_threshold")
    table = cluster_table(clusters, labels, reference, k=k, distance_threshold=threshold)
    results.write_cluster_table(
        out, table, cluster_key=cluster_key, label_key=label_key, key_added=key_added
    )
    return out if copy else None
