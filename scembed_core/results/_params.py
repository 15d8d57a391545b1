"""The parameters each step records, and where (``uns["scembed"][key]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._keys import CLUSTER, LABEL, RUN_PARAMS, UNS_KEY

if TYPE_CHECKING:
    import anndata as ad

    from ..reference import Reference


def project_params(
    reference: Reference,
    *,
    ev: bool,
    n_neighbors: int,
    mapping_distance_threshold: float | None,
    query_genome: str | None = None,
) -> dict[str, Any]:
    """Parameters of a projection, as recorded in ``uns["scembed"]["project"]``.

    Parameters
    ----------
    reference
        The reference projected onto (its name, build and fingerprint are recorded).
    ev
        Whether the cells were placed on the reference map.
    n_neighbors
        Reference neighbours of the mapping distance.
    mapping_distance_threshold
        The reference's own 99th percentile of mapping distances over ``n_neighbors``
        (``Projection.mapping_distance_threshold``; None without reference cells): the bar
        of ``obs["scembed_mapping_outlier"]`` and of the clusters' absent-type check.
    query_genome
        The build the peaks were on before any liftover (default: the reference's).

    Returns
    -------
    dict
        The record.
    """
    return {
        "reference": reference.name,
        "reference_genome": reference.genome,
        "reference_fingerprint": reference.fingerprint,
        "query_genome": query_genome or reference.genome,
        "ev": bool(ev),
        "n_neighbors": int(n_neighbors),
        "mapping_distance_threshold": None
        if mapping_distance_threshold is None
        else float(mapping_distance_threshold),
    }


def cluster_params(
    *,
    method: str,
    resolution: float,
    n_clusters_requested: int | None,
    n_neighbors: int,
    random_state: int,
    key_added: str = CLUSTER,
    neighbors_key: str | None = None,
) -> dict[str, Any]:
    """Parameters of a clustering, as recorded in ``uns["scembed"][key_added]``.

    Parameters
    ----------
    method
        ``"louvain"`` or ``"leiden"``.
    resolution
        The resolution used (found by the search when ``n_clusters_requested``).
    n_clusters_requested
        The number of clusters searched for, or None.
    n_neighbors
        Neighbours per cell of the graph that was clustered.
    random_state
        Seed of the community detection.
    key_added
        The ``obs`` column written.
    neighbors_key
        The stored graph that was clustered (None: scanpy's default ``"neighbors"``).

    Returns
    -------
    dict
        The record.
    """
    return {
        "key_added": key_added,
        "method": method,
        "resolution": float(resolution),
        "n_clusters_requested": n_clusters_requested,
        "n_neighbors": int(n_neighbors),
        "random_state": int(random_state),
        "neighbors_key": neighbors_key,
    }


def label_params(
    *,
    method: str,
    method_requested: str,
    note: str | None,
    label_key: str,
    n_neighbors: int,
    min_confidence: float,
    max_mapping_distance: float | None,
    key_added: str = LABEL,
) -> dict[str, Any]:
    """Parameters of a label transfer, as recorded in ``uns["scembed"][key_added]``.

    Parameters
    ----------
    method
        The method that ran (:func:`~scembed_core.labels.assign.resolve_label_method`).
    method_requested
        The method asked for.
    note
        Why they differ (None when they do not).
    label_key
        The reference label column.
    n_neighbors
        Reference neighbours of the vote, the blend and the mapping distance.
    min_confidence, max_mapping_distance
        The thresholds to ``"Unassigned"``.
    key_added
        The ``obs`` column written.

    Returns
    -------
    dict
        The record.
    """
    return {
        "key_added": key_added,
        "method": method,
        "method_requested": method_requested,
        "note": note,
        "label_key": label_key,
        "n_neighbors": int(n_neighbors),
        "min_confidence": float(min_confidence),
        "max_mapping_distance": None
        if max_mapping_distance is None
        else float(max_mapping_distance),
    }


def scembed_uns(adata: ad.AnnData) -> dict:
    """Return the ``uns["scembed"]`` dictionary of ``adata`` (created when missing).

    Parameters
    ----------
    adata
        The query.

    Returns
    -------
    dict
        ``adata.uns["scembed"]``.
    """
    return adata.uns.setdefault(UNS_KEY, {})


def record(adata: ad.AnnData, step: str, params: dict[str, Any]) -> dict:
    """Record a step's ``params`` under ``uns["scembed"][key]`` and refresh the run summary.

    Parameters
    ----------
    adata
        The annotated query.
    step
        ``"project"``, ``"cluster"``, ``"transfer_labels"`` or ``"annotate_clusters"``.
    params
        The parameters; their ``key_added`` names the record (else the step does).

    Returns
    -------
    dict
        The record (``{"step": step, "params": params}``), to add results beside them.
    """
    return record_into(scembed_uns(adata), step, params)


def record_into(uns: dict, step: str, params: dict[str, Any]) -> dict:
    """:func:`record` into a plain ``uns["scembed"]`` dict (the Dask path builds one).

    Parameters
    ----------
    uns
        The ``uns["scembed"]`` dictionary.
    step
        The step's name.
    params
        The parameters (``key_added`` names the record).

    Returns
    -------
    dict
        The record.
    """
    key = params.get("key_added") or step
    uns[key] = {"step": step, "params": dict(params)}
    summary = dict(uns.get("params") or {})
    for name, (where, parameter) in RUN_PARAMS.items():
        if where == key or name not in summary:
            summary[name] = (uns.get(where) or {}).get("params", {}).get(parameter)
    uns["params"] = summary
    return uns[key]
