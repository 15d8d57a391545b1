"""The one result writer: where every scEmbed result lives in an AnnData.

The verbs of :mod:`scembed_core.tl` (and through them the command line), the app's
Export page and the Dask path (:mod:`scembed_core.atlas`, which writes the same keys
chunk by chunk into a zarr store) all write through the functions and key names here,
so their files read the same way.

Keys
----
``obsm``
    ``X_scembed``
        ``(n_cells, dim)`` float32 E-projection; NaN rows for cells that cover no trained
        reference region (they are "Unassigned" everywhere below).
    ``X_scembed_whitened``
        The reference's whitened analysis space (when it has a whitening); clustering and
        labels use it.
    ``X_scembed_umap``
        ``(n_cells, 2)`` EV-projection: positions on the reference map (when it has one).
    ``scembed_neighbors``, ``scembed_neighbor_distances``
        ``(n_cells, k)`` nearest reference cells (-1: none) and their cosine distances
        (in-memory results only; the Dask path does not keep them).
    ``scembed_label_probabilities``
        ``(n_cells, n_classes)`` float32 class probabilities, columns in the order of
        ``uns["scembed"]["label_classes"]``.
``obs``
    ``scembed_n_regions`` (int), ``scembed_unmapped`` (bool: no embedding),
    ``scembed_mapping_distance`` (mean cosine distance to the ``k`` nearest reference
    cells), ``scembed_mapping_outlier`` (bool: farther than the reference's own 99th
    percentile); ``scembed_cluster`` (categorical, numbered clusters then
    ``"Unassigned"``); ``scembed_label`` (after thresholds), ``scembed_label_predicted``
    (top class before thresholds), ``scembed_label_confidence``,
    ``scembed_label_similarity`` (1 - mapping distance); ``scembed_unknown`` (bool: the
    reference's calibrated Unknown rule flags the cell, its label is then ``"Unknown"``)
    and ``scembed_unknown_score``; ``scembed_cluster_label`` (the cluster's majority
    label, ``"Unknown"`` for a cluster of mostly Unknown cells) and
    ``scembed_cluster_possibly_absent`` (bool).
``uns["scembed"]``
    ``params``
        The run's settings in one flat dict, always with the keys of :data:`RUN_PARAMS`
        (None for a step that did not run), taken from the steps' own records.
    ``project``, ``cluster``, ``transfer_labels``, ``annotate_clusters``
        ``{"params": {...}}``: the parameters of each step (as ``scanpy.tl.leiden``).
    ``coverage``, ``timings``
        Peak-mapping summary (with its warnings) and seconds per projection stage.
    ``label_classes``, ``cluster_table``
        Class order of the probabilities; one row per cluster (``cluster``, ``label``,
        ``agreement``, ``n_cells``, ``median_confidence``, ``median_mapping_distance``,
        ``possibly_absent``).
    ``liftover``, ``build_detection``, ``evaluation``
        When the peaks were lifted, the build detected, or a truth column given.
    ``fit``
        The dataset verdict (:mod:`scembed_core.fit`): ``verdict``, ``cause``, ``reason``
        and the numbers behind them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .labels.vote import UNASSIGNED

if TYPE_CHECKING:
    import anndata as ad

    from .project import Projection
    from .reference import Reference

__all__ = [
    "UNASSIGNED",
    "UNS_KEY",
    "RUN_PARAMS",
    "EMBEDDING",
    "ANALYSIS",
    "UMAP",
    "PROBABILITIES",
    "CLUSTER",
    "LABEL",
    "cluster_categorical",
    "project_params",
    "cluster_params",
    "label_params",
    "record",
    "record_into",
    "write_projection",
    "write_clusters",
    "write_labels",
    "write_cluster_table",
    "write_run_facts",
    "cluster_codes",
    "labels_frame",
    "cell_table",
    "probability_csv_name",
    "h5_plain",
    "write_h5ad",
    "h5ad_bytes",
]

UNS_KEY = "scembed"
EMBEDDING = "X_scembed"
ANALYSIS = "X_scembed_whitened"
UMAP = "X_scembed_umap"
PROBABILITIES = "scembed_label_probabilities"
CLUSTER = "scembed_cluster"
LABEL = "scembed_label"

#: Keys of ``uns["scembed"]["params"]`` and the (step, parameter) each is read from.
RUN_PARAMS: dict[str, tuple[str, str]] = {
    "reference": ("project", "reference"),
    "reference_genome": ("project", "reference_genome"),
    "query_genome": ("project", "query_genome"),
    "ev": ("project", "ev"),
    "k_neighbors": ("project", "k_neighbors"),
    "method": ("cluster", "method"),
    "resolution": ("cluster", "resolution"),
    "n_clusters_requested": ("cluster", "n_clusters_requested"),
    "n_neighbors": ("cluster", "n_neighbors"),
    "seed": ("cluster", "random_state"),
    "label_key": ("transfer_labels", "label_key"),
    "label_method": ("transfer_labels", "method"),
    "label_method_requested": ("transfer_labels", "method_requested"),
    "label_note": ("transfer_labels", "note"),
    "min_confidence": ("transfer_labels", "min_confidence"),
    "max_mapping_distance": ("transfer_labels", "max_mapping_distance"),
}


# --------------------------------------------------------------------------- parameters


def project_params(
    reference: Reference, *, ev: bool, k_neighbors: int, query_genome: str | None = None
) -> dict[str, Any]:
    """Parameters of a projection, as recorded in ``uns["scembed"]["project"]``.

    ``mapping_distance_threshold`` is the reference's own 99th percentile of mapping
    distances over ``k_neighbors`` (None without reference cells): the bar of
    ``obs["scembed_mapping_outlier"]`` and of the clusters' absent-type check.
    """
    from .labels.vote import mapping_distance_threshold

    threshold = None
    if reference.cells is not None:
        threshold = mapping_distance_threshold(reference, int(min(k_neighbors, reference.n_cells)))
    return {
        "reference": reference.name,
        "reference_genome": reference.genome,
        "reference_fingerprint": reference.fingerprint,
        "query_genome": query_genome or reference.genome,
        "ev": bool(ev),
        "k_neighbors": int(k_neighbors),
        "mapping_distance_threshold": None if threshold is None else float(threshold),
    }


def cluster_params(
    *,
    method: str,
    resolution: float,
    n_clusters_requested: int | None,
    n_neighbors: int,
    random_state: int,
    key_added: str = CLUSTER,
) -> dict[str, Any]:
    """Parameters of a clustering, as recorded in ``uns["scembed"]["cluster"]``."""
    return {
        "key_added": key_added,
        "method": method,
        "resolution": float(resolution),
        "n_clusters_requested": n_clusters_requested,
        "n_neighbors": int(n_neighbors),
        "random_state": int(random_state),
    }


def label_params(
    reference: Reference,
    *,
    method: str,
    label_key: str | None,
    k: int,
    min_confidence: float,
    max_mapping_distance: float | None,
    key_added: str = LABEL,
    unknown_rate: float | None = None,
) -> dict[str, Any]:
    """Parameters of a label transfer (``uns["scembed"]["transfer_labels"]``).

    ``method`` is the method asked for; the one that ran (the kNN vote when the reference
    has no classifier for ``label_key``) and the note saying so are recorded beside it.
    """
    from .labels.assign import resolve_label_method

    used, note = resolve_label_method(reference, method, label_key)
    return {
        "key_added": key_added,
        "method": used,
        "method_requested": method,
        "note": note,
        "label_key": label_key or reference.default_label_key,
        "k": int(k),
        "min_confidence": float(min_confidence),
        "max_mapping_distance": None
        if max_mapping_distance is None
        else float(max_mapping_distance),
        "unknown_rate": None if unknown_rate is None else float(unknown_rate),
    }


def _uns(adata: ad.AnnData) -> dict:
    return adata.uns.setdefault(UNS_KEY, {})


def record(adata: ad.AnnData, step: str, params: dict[str, Any]) -> None:
    """Store ``params`` as ``uns["scembed"][step]["params"]`` and refresh the run summary."""
    record_into(_uns(adata), step, params)


def record_into(uns: dict, step: str, params: dict[str, Any]) -> None:
    """:func:`record` into a plain ``uns["scembed"]`` dict (the Dask path builds one)."""
    uns[step] = {"params": dict(params)}
    summary = dict(uns.get("params") or {})
    for key, (where, name) in RUN_PARAMS.items():
        if where == step or key not in summary:
            summary[key] = (uns.get(where) or {}).get("params", {}).get(name)
    uns["params"] = summary


# --------------------------------------------------------------------------- writers


def cluster_categorical(codes: np.ndarray) -> pd.Categorical:
    """Cluster numbers as text (``-1``: ``"Unassigned"``), categories in numeric order."""
    codes = np.asarray(codes)
    names = codes.astype(str).astype(object)
    names[codes < 0] = UNASSIGNED
    order = [str(c) for c in sorted(set(codes[codes >= 0].tolist()))]
    categories = order + ([UNASSIGNED] if (codes < 0).any() else [])
    return pd.Categorical(names, categories=categories)


def write_projection(
    adata: ad.AnnData,
    projection: Projection,
    reference: Reference,
    *,
    k_neighbors: int,
    query_genome: str | None = None,
) -> None:
    """Write a :class:`~scembed_core.project.Projection` (``obsm``, per-cell ``obs``, ``uns``)."""
    from .project import projection_frame

    adata.obsm[EMBEDDING] = np.asarray(projection.embedding, dtype=np.float32)
    for key, value in ((ANALYSIS, projection.analysis), (UMAP, projection.umap)):
        if value is not None:
            adata.obsm[key] = np.asarray(value, dtype=np.float32)
        else:
            adata.obsm.pop(key, None)
    if projection.neighbors is not None:
        adata.obsm["scembed_neighbors"] = np.asarray(projection.neighbors[0])
        adata.obsm["scembed_neighbor_distances"] = np.asarray(projection.neighbors[1])
    for column, values in projection_frame(adata, projection).items():
        adata.obs[column] = values.to_numpy()
    uns = _uns(adata)
    uns["coverage"] = projection.coverage.summary()
    uns["timings"] = {k: float(v) for k, v in projection.timings.items()}
    params = project_params(
        reference,
        ev=projection.umap is not None,
        k_neighbors=k_neighbors,
        query_genome=query_genome,
    )
    record(adata, "project", params)


def write_clusters(adata: ad.AnnData, codes: np.ndarray, params: dict[str, Any]) -> None:
    """Write cluster numbers (``-1``: no embedding) under ``params["key_added"]``."""
    adata.obs[params.get("key_added", CLUSTER)] = cluster_categorical(codes)
    record(adata, "cluster", params)


def write_labels(adata: ad.AnnData, labels: pd.DataFrame, params: dict[str, Any]) -> None:
    """Write :func:`~scembed_core.labels.assign.assign_labels` output under ``params["key_added"]``."""
    from .labels.assign import label_classes, probabilities_of

    key = params.get("key_added", LABEL)
    adata.obs[key] = pd.Categorical(labels["label"].to_numpy())
    adata.obs[f"{key}_predicted"] = pd.Categorical(labels["predicted"].to_numpy())
    adata.obs[f"{key}_confidence"] = labels["confidence"].to_numpy(dtype=float)
    adata.obs[f"{key}_similarity"] = labels["mean_similarity"].to_numpy(dtype=float)
    adata.obs["scembed_mapping_distance"] = labels["mapping_distance"].to_numpy(dtype=float)
    if "unknown" in labels:
        adata.obs["scembed_unknown"] = labels["unknown"].to_numpy(dtype=bool)
        adata.obs["scembed_unknown_score"] = labels["unknown_score"].to_numpy(dtype=float)
    classes = label_classes(labels)
    if classes:
        adata.obsm[PROBABILITIES] = probabilities_of(labels)
        _uns(adata)["label_classes"] = classes
    record(adata, "transfer_labels", params)


def write_cluster_table(
    adata: ad.AnnData,
    table: pd.DataFrame,
    *,
    cluster_key: str = CLUSTER,
    label_key: str = LABEL,
) -> None:
    """Write a :func:`~scembed_core.labels.assign.cluster_table` and each cell's cluster label."""
    clusters = adata.obs[cluster_key].astype(str).to_numpy()
    names = table["cluster"].astype(str)
    by_cluster = dict(zip(names, table["label"].astype(str), strict=True))
    adata.obs["scembed_cluster_label"] = pd.Categorical(
        [by_cluster.get(c, UNASSIGNED) for c in clusters]
    )
    flagged = dict(zip(names, table.get("possibly_absent", False), strict=False))
    adata.obs["scembed_cluster_possibly_absent"] = np.asarray(
        [bool(flagged.get(c, False)) for c in clusters], dtype=bool
    )
    _uns(adata)["cluster_table"] = table.astype({"cluster": str, "label": str})
    record(adata, "annotate_clusters", {"cluster_key": cluster_key, "label_key": label_key})


def write_run_facts(
    adata: ad.AnnData,
    *,
    liftover: dict | None = None,
    build_detection: dict | None = None,
    evaluation: dict | None = None,
    fit: dict | None = None,
) -> None:
    """Record how the query was prepared (liftover, detected build), its fit and evaluation."""
    uns = _uns(adata)
    if fit:
        uns["fit"] = dict(fit)
    lift = liftover or adata.uns.get("scembed_liftover")
    read = adata.uns.get("scembed_read")
    lift = lift or (read.get("liftover") if isinstance(read, dict) else None)
    if lift:
        uns["liftover"] = dict(lift)
    adata.uns.pop("scembed_liftover", None)  # recorded under uns["scembed"]["liftover"]
    if build_detection:
        uns["build_detection"] = dict(build_detection)
    if evaluation:
        uns["evaluation"] = dict(evaluation)


# --------------------------------------------------------------------------- readers


def cluster_codes(adata: ad.AnnData, key: str = CLUSTER) -> np.ndarray:
    """Cluster numbers of ``obs[key]`` (``-1`` for ``"Unassigned"``)."""
    names = adata.obs[key].astype(str).to_numpy()
    codes = pd.to_numeric(pd.Series(names), errors="coerce").fillna(-1)
    return codes.to_numpy(dtype=np.int64)


def labels_frame(adata: ad.AnnData, key: str = LABEL) -> pd.DataFrame | None:
    """The :func:`~scembed_core.labels.assign.assign_labels` frame back from ``obs``/``obsm``."""
    from .labels.assign import PROBABILITY_PREFIX

    if key not in adata.obs:
        return None
    obs = adata.obs
    frame = pd.DataFrame(
        {
            "predicted": obs[f"{key}_predicted"].astype(str).to_numpy(),
            "label": obs[key].astype(str).to_numpy(),
            "confidence": obs[f"{key}_confidence"].to_numpy(dtype=float),
            "mean_similarity": obs[f"{key}_similarity"].to_numpy(dtype=float),
            "mapping_distance": obs["scembed_mapping_distance"].to_numpy(dtype=float),
        },
        index=adata.obs_names,
    )
    if "scembed_unknown" in obs:
        frame["unknown"] = obs["scembed_unknown"].to_numpy(dtype=bool)
        frame["unknown_score"] = obs["scembed_unknown_score"].to_numpy(dtype=float)
    classes = list(_uns(adata).get("label_classes", []))
    if classes and PROBABILITIES in adata.obsm:
        probabilities = np.asarray(adata.obsm[PROBABILITIES], dtype=np.float32)
        for i, name in enumerate(classes):
            frame[PROBABILITY_PREFIX + str(name)] = probabilities[:, i]
    return frame


def probability_csv_name(class_name: str) -> str:
    """CSV column of a class probability: ``B`` (or ``prob:B``) -> ``scembed_prob_B``."""
    from .labels.assign import PROBABILITY_PREFIX

    return "scembed_prob_" + str(class_name).removeprefix(PROBABILITY_PREFIX)


def cell_table(adata: ad.AnnData) -> pd.DataFrame:
    """The per-cell CSV: every ``scembed_*`` obs column, one ``scembed_prob_<class>`` column
    per class and ``scembed_umap_1``/``scembed_umap_2`` (the position on the reference map)."""
    columns = [c for c in adata.obs.columns if str(c).startswith("scembed_")]
    frame = adata.obs[columns].copy()
    classes = list(_uns(adata).get("label_classes", []))
    if classes and PROBABILITIES in adata.obsm:
        probabilities = np.asarray(adata.obsm[PROBABILITIES], dtype=float)
        for i, name in enumerate(classes):
            frame[probability_csv_name(name)] = probabilities[:, i]
    if UMAP in adata.obsm:
        coords = np.asarray(adata.obsm[UMAP], dtype=float).T
        frame["scembed_umap_1"], frame["scembed_umap_2"] = coords
    frame.index.name = "cell"
    return frame


# --------------------------------------------------------------------------- files


def h5_plain(value: Any) -> Any:
    """Make a nested structure writable by h5py without changing what it says.

    anndata writes ``None``, numbers, strings and numeric arrays natively; only lists that
    mix types (which h5py cannot store) become lists of strings, and numpy scalars become
    Python numbers. Numeric lists stay numeric and ``None`` stays ``None``.
    """
    if isinstance(value, dict):
        return {str(k): h5_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [h5_plain(v) for v in value]
        if all(isinstance(v, (bool, int, float)) for v in items):
            return np.asarray(items, dtype=None if items else np.float64)
        if all(isinstance(v, str) for v in items):
            return items
        return [str(v) for v in items]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_h5ad(adata: ad.AnnData, path: str | Path) -> Path:
    """Write an annotated ``.h5ad`` (gzip; ``uns`` made h5py-safe without changing it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = adata.copy()
    out.uns = h5_plain(dict(out.uns))
    out.write_h5ad(path, compression="gzip")
    return path


def h5ad_bytes(adata: ad.AnnData) -> bytes:
    """The bytes :func:`write_h5ad` would write (for a download button)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="scembed-export-") as tmp:
        return write_h5ad(adata, Path(tmp) / "annotated.h5ad").read_bytes()
