"""AnnData-first tools, as scanpy users expect: ``se.tl.project(adata, reference)`` and so on.

Each verb takes the query ``AnnData`` first, writes its results under documented keys and
records the parameters that made them in ``adata.uns["scembed"][<verb>]``, like
``scanpy.tl.leiden`` does. They call the same engine functions as the command line
(:func:`scembed_core.pipeline.run_pipeline`), so the results are the same.

Keys written
------------
``project``
    ``obsm["X_scembed"]`` (E-projection), ``obsm["X_scembed_whitened"]`` (analysis space),
    ``obsm["X_scembed_umap"]`` (EV-projection), ``obsm["scembed_neighbors"]`` and
    ``obsm["scembed_neighbor_distances"]`` (nearest reference cells), per-cell coverage and
    mapping-distance columns in ``obs``.
``cluster``
    ``obs[key_added]`` (default ``"scembed_cluster"``, categorical; ``"Unassigned"`` for
    cells without an embedding).
``transfer_labels``
    ``obs[key_added]``, ``obs[key_added + "_confidence"]``,
    ``obsm["scembed_label_probabilities"]`` with the class order in
    ``uns["scembed"]["label_classes"]``.
``annotate_clusters``
    ``obs["scembed_cluster_label"]``, ``obs["scembed_cluster_possibly_absent"]`` and the
    table in ``uns["scembed"]["cluster_table"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .annotate import UNASSIGNED
from .errors import ParameterError

if TYPE_CHECKING:
    import anndata as ad

    from .reference import Reference

__all__ = ["project", "cluster", "transfer_labels", "annotate_clusters"]

_WHITENED = "X_scembed_whitened"
_EMBEDDING = "X_scembed"


def _record(adata: ad.AnnData, verb: str, params: dict[str, Any]) -> None:
    uns = adata.uns.setdefault("scembed", {})
    uns[verb] = {"params": params}


def _target(adata: ad.AnnData, copy: bool) -> ad.AnnData:
    return adata.copy() if copy else adata


def project(
    adata: ad.AnnData,
    reference: Reference,
    *,
    ev: bool = True,
    k_neighbors: int = 15,
    copy: bool = False,
) -> ad.AnnData | None:
    """Embed the cells with the reference's region vectors and place them on its map.

    Parameters
    ----------
    adata
        Query cells x peaks with peak coordinates in ``var`` (as :func:`scembed_core.read`
        gives them).
    reference
        A loaded reference (:func:`scembed_core.load_reference`).
    ev
        Also place the cells on the reference map (needs a reference with a map).
    k_neighbors
        Nearest reference cells kept for the mapping distance and for label transfer.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The copy when ``copy`` is True, else None (``adata`` is updated in place).
    """
    from .project import project as _project
    from .project import projection_frame

    out = _target(adata, copy)
    result = _project(out, reference, ev=ev and reference.can_ev_project, k_neighbors=k_neighbors)
    out.obsm[_EMBEDDING] = result.embedding
    if result.analysis is not None:
        out.obsm[_WHITENED] = result.analysis
    if result.umap is not None:
        out.obsm["X_scembed_umap"] = result.umap
    if result.neighbors is not None:
        out.obsm["scembed_neighbors"] = result.neighbors[0]
        out.obsm["scembed_neighbor_distances"] = result.neighbors[1]
    for column, values in projection_frame(out, result).items():
        out.obs[column] = values.to_numpy()
    _record(
        out,
        "project",
        {
            "reference": reference.name,
            "reference_fingerprint": reference.fingerprint,
            "ev": result.umap is not None,
            "k_neighbors": int(k_neighbors),
        },
    )
    return out if copy else None


def _analysis(adata: ad.AnnData) -> np.ndarray:
    for key in (_WHITENED, _EMBEDDING):
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
    key_added: str = "scembed_cluster",
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
        Search the resolution that gives this many clusters (the paper's search).
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
    if n_clusters is not None:
        search = find_resolution(graph, n_clusters, method=method, seed=random_state)
        codes, resolution = search.labels, search.resolution
    else:
        resolution = 1.0 if resolution is None else float(resolution)
        codes = cluster_graph(graph, resolution, method=method, seed=random_state)
    names = codes.astype(str).astype(object)
    names[codes < 0] = UNASSIGNED
    order = [str(c) for c in sorted(set(codes[codes >= 0].tolist()))]
    categories = order + ([UNASSIGNED] if (codes < 0).any() else [])
    out.obs[key_added] = pd.Categorical(names, categories=categories)
    _record(
        out,
        "cluster",
        {
            "key_added": key_added,
            "method": method,
            "resolution": float(resolution),
            "n_clusters_requested": n_clusters,
            "n_neighbors": int(n_neighbors),
            "random_state": int(random_state),
        },
    )
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
    key_added: str = "scembed_label",
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
        As :func:`scembed_core.labeling.assign_labels`.
    key_added
        ``obs`` column of the labels (``<key_added>_confidence`` beside it).
    copy
        Return a modified copy instead of writing into ``adata``.
    """
    from .labeling import assign_labels, resolve_label_method

    out = _target(adata, copy)
    if _EMBEDDING not in out.obsm:
        raise ParameterError("No obsm['X_scembed']: run scembed_core.tl.project first.")
    fingerprint = out.uns.get("scembed", {}).get("project", {}).get("params", {})
    fingerprint = fingerprint.get("reference_fingerprint")
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
    used, note = resolve_label_method(reference, method, label_key)
    labels = assign_labels(
        np.asarray(out.obsm[_EMBEDDING]),
        reference,
        method=method,
        label_key=label_key,
        k=k,
        min_confidence=min_confidence,
        max_mapping_distance=max_mapping_distance,
        neighbors=neighbors,
    )
    out.obs[key_added] = pd.Categorical(labels["label"].to_numpy())
    out.obs[f"{key_added}_confidence"] = labels["confidence"].to_numpy()
    probability = [c for c in labels.columns if c.startswith("prob:")]
    if probability:
        out.obsm["scembed_label_probabilities"] = labels[probability].to_numpy(np.float32)
        out.uns.setdefault("scembed", {})["label_classes"] = [
            c.removeprefix("prob:") for c in probability
        ]
    out.obs["scembed_mapping_distance"] = labels["mapping_distance"].to_numpy()
    _record(
        out,
        "transfer_labels",
        {
            "key_added": key_added,
            "method": used,
            "method_requested": method,
            "note": note,
            "label_key": label_key or reference.default_label_key,
            "k": int(k),
            "min_confidence": float(min_confidence),
            "max_mapping_distance": max_mapping_distance,
        },
    )
    return out if copy else None


def annotate_clusters(
    adata: ad.AnnData,
    reference: Reference | None = None,
    *,
    cluster_key: str = "scembed_cluster",
    label_key: str = "scembed_label",
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
    from .labeling import cluster_table

    out = _target(adata, copy)
    missing = [key for key in (cluster_key, label_key) if key not in out.obs]
    if missing:
        raise ParameterError(
            f"obs has no {missing}: run scembed_core.tl.cluster and tl.transfer_labels first."
        )
    labels = pd.DataFrame(
        {
            "label": out.obs[label_key].astype(str).to_numpy(),
            "confidence": out.obs.get(
                f"{label_key}_confidence", pd.Series(np.nan, index=out.obs_names)
            ).to_numpy(),
            "mapping_distance": out.obs.get(
                "scembed_mapping_distance", pd.Series(np.nan, index=out.obs_names)
            ).to_numpy(),
        },
        index=out.obs_names,
    )
    clusters = out.obs[cluster_key].astype(str).to_numpy()
    k = out.uns.get("scembed", {}).get("transfer_labels", {}).get("params", {}).get("k", 15)
    table = cluster_table(clusters, labels, reference, k=int(k))
    by_cluster = dict(zip(table["cluster"].astype(str), table["label"].astype(str), strict=True))
    out.obs["scembed_cluster_label"] = pd.Categorical(
        [by_cluster.get(c, UNASSIGNED) for c in clusters]
    )
    if "possibly_absent" in table:
        flagged = dict(zip(table["cluster"].astype(str), table["possibly_absent"], strict=True))
        out.obs["scembed_cluster_possibly_absent"] = [bool(flagged.get(c, False)) for c in clusters]
    out.uns.setdefault("scembed", {})["cluster_table"] = table.astype(
        {"cluster": str, "label": str}
    )
    _record(out, "annotate_clusters", {"cluster_key": cluster_key, "label_key": label_key})
    return out if copy else None
