"""The whole annotation run: project, cluster, transfer labels, vote per cluster, evaluate.

Used by the ``project`` command and by power users; the app calls the same stages one by
one so it can cache each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .annotate import UNASSIGNED
from .cluster import build_knn_graph, cluster_graph, find_resolution, n_clusters_of
from .evaluate import classification_report, clustering_scores
from .labeling import (
    assign_labels,
    cluster_table,
    label_classes,
    probabilities_of,
    probability_columns,
    resolve_label_method,
)
from .project import Projection, project, projection_frame

if TYPE_CHECKING:
    import anndata as ad

    from .reference import Reference

__all__ = ["PipelineResult", "run_pipeline", "annotated_adata", "write_results", "h5_plain"]


@dataclass
class PipelineResult:
    """Everything one run produced, for one query dataset."""

    adata: ad.AnnData
    projection: Projection
    clusters: np.ndarray
    resolution: float
    labels: pd.DataFrame | None
    cluster_table: pd.DataFrame | None
    params: dict
    resolution_curve: pd.DataFrame | None = None
    evaluation: dict = field(default_factory=dict)
    liftover: dict | None = None
    build_detection: dict | None = None

    @property
    def n_clusters(self) -> int:
        """Number of clusters found."""
        return n_clusters_of(self.clusters)


def run_pipeline(
    adata: ad.AnnData,
    reference: Reference,
    *,
    ev: bool = True,
    resolution: float | None = None,
    n_clusters: int | None = None,
    method: str = "louvain",
    k_neighbors: int = 15,
    n_neighbors: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    label_key: str | None = None,
    label_method: str = "classifier",
    truth_key: str | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    query_genome: str = "auto",
    liftover: bool = True,
) -> PipelineResult:
    """Project ``adata`` onto ``reference``, cluster it and transfer labels.

    Parameters mirror the ``project`` command; ``resolution`` defaults to 1.0 unless
    ``n_clusters`` asks for a resolution search. ``k_neighbors`` reference neighbours vote
    on labels and give the mapping distance; ``n_neighbors`` is the query kNN graph's k
    (the graph that is clustered). ``truth_key`` names a query obs column to
    score clusters (ARI/AMI/homogeneity) and labels (accuracy, F1) against.
    ``query_genome`` (``auto``, ``hg19``, ``hg38``) and ``liftover`` decide whether the
    peaks are first lifted onto the reference's build
    (:func:`scembed_core.liftover.query.prepare_query`); what was done is recorded in
    ``uns["scembed"]["liftover"]``.
    ``label_method`` is ``"classifier"`` (the reference's label model, or the kNN vote with
    a note in ``params["label_note"]`` when it has none) or ``"knn"``; see
    :func:`scembed_core.labeling.assign_labels`.
    """
    from .errors import ParameterError
    from .liftover.query import prepare_query

    report = progress or (lambda fraction, message: None)
    report(0.0, "Checking the genome build")
    prepared = prepare_query(adata, reference, query_genome=query_genome, liftover=liftover)
    adata = prepared.adata
    if truth_key is not None and truth_key not in adata.obs:
        raise ParameterError(
            f"Truth column {truth_key!r} is not in the query's obs columns {list(adata.obs.columns)}."
        )
    projection = project(
        adata, reference, ev=ev, k_neighbors=k_neighbors, progress=lambda f, m: report(0.7 * f, m)
    )
    report(0.75, "Clustering (kNN graph + Louvain)")
    graph = build_knn_graph(projection.space, n_neighbors=n_neighbors, seed=seed)
    curve = None
    if n_clusters is not None:
        search = find_resolution(graph, n_clusters, method=method, seed=seed)
        clusters, resolution, curve = search.labels, search.resolution, search.curve
    else:
        resolution = 1.0 if resolution is None else resolution
        clusters = cluster_graph(graph, resolution, method=method, seed=seed)
    labels = table = None
    used_method, label_note = None, None
    if reference.can_transfer_labels:
        report(0.9, "Transferring labels from the reference")
        used_method, label_note = resolve_label_method(reference, label_method, label_key)
        labels = assign_labels(
            projection.embedding,
            reference,
            method=label_method,
            label_key=label_key,
            k=k_neighbors,
            min_confidence=min_confidence,
            max_mapping_distance=max_mapping_distance,
            neighbors=projection.neighbors,
            warn=False,
        )
        labels.index = adata.obs_names
        table = cluster_table(_cluster_names(clusters), labels, reference, k=k_neighbors)
    params = {
        "reference": reference.name,
        "reference_genome": reference.genome,
        "label_key": label_key or reference.default_label_key,
        "resolution": float(resolution),
        "method": method,
        "k_neighbors": k_neighbors,
        "n_neighbors": n_neighbors,
        "min_confidence": min_confidence,
        "max_mapping_distance": max_mapping_distance,
        "label_method": used_method,
        "label_method_requested": label_method,
        "label_note": label_note,
        "seed": seed,
        "query_genome": prepared.query_build,
    }
    result = PipelineResult(
        adata, projection, clusters, float(resolution), labels, table, params, curve
    )
    result.liftover = prepared.liftover
    if prepared.detection is not None:
        result.build_detection = prepared.detection.summary()
    if truth_key is not None:
        truth = adata.obs[truth_key]
        result.evaluation["clustering"] = clustering_scores(truth, clusters)
        if labels is not None:
            result.evaluation["labels"] = classification_report(truth, labels["label"]).summary()
    report(1.0, "Done")
    return result


def _cluster_names(clusters: np.ndarray) -> np.ndarray:
    names = clusters.astype(str).astype(object)
    names[clusters < 0] = UNASSIGNED
    return names


def annotated_adata(result: PipelineResult) -> ad.AnnData:
    """A copy of the query with the results under the documented keys.

    ``obsm["X_scembed"]`` (E-projection), ``obsm["X_scembed_whitened"]`` (the reference's
    analysis space, when it has one), ``obsm["X_scembed_umap"]`` (EV coordinates),
    ``obs["scembed_cluster"]``, ``obs["scembed_label"]``, ``obs["scembed_label_confidence"]``,
    ``obs["scembed_cluster_label"]``, ``obs["scembed_cluster_possibly_absent"]`` (the
    cell's cluster may be a type the reference lacks), coverage and mapping-distance
    columns, ``obsm["scembed_label_probabilities"]`` (one column per class, in the order of
    ``uns["scembed"]["label_classes"]``), and the parameters, coverage summary and
    evaluation in ``uns["scembed"]``.
    """
    out = result.adata.copy()
    projection = result.projection
    out.obsm["X_scembed"] = projection.embedding
    if projection.analysis is not None:
        out.obsm["X_scembed_whitened"] = projection.analysis
    if projection.umap is not None:
        out.obsm["X_scembed_umap"] = projection.umap
    for column, values in projection_frame(out, projection).items():
        out.obs[column] = values.to_numpy()
    out.obs["scembed_cluster"] = pd.Categorical(_cluster_names(result.clusters))
    if result.labels is not None:
        out.obs["scembed_label"] = pd.Categorical(result.labels["label"].to_numpy())
        out.obs["scembed_label_confidence"] = result.labels["confidence"].to_numpy()
        out.obs["scembed_label_similarity"] = result.labels["mean_similarity"].to_numpy()
        by_cluster = dict(
            zip(result.cluster_table["cluster"], result.cluster_table["label"], strict=True)
        )
        out.obs["scembed_cluster_label"] = pd.Categorical(
            [by_cluster.get(c, UNASSIGNED) for c in out.obs["scembed_cluster"].astype(str)]
        )
        absent = dict(
            zip(
                result.cluster_table["cluster"],
                result.cluster_table["possibly_absent"],
                strict=True,
            )
        )
        out.obs["scembed_cluster_possibly_absent"] = (
            out.obs["scembed_cluster"].astype(str).map(absent).fillna(False).to_numpy(dtype=bool)
        )
        out.obsm["scembed_label_probabilities"] = probabilities_of(result.labels)
    uns = {"params": result.params, "coverage": h5_plain(projection.coverage.summary())}
    if result.labels is not None:
        uns["label_classes"] = label_classes(result.labels)
    uns["timings"] = dict(projection.timings)
    if result.liftover:
        uns["liftover"] = result.liftover
    if result.build_detection:
        uns["build_detection"] = result.build_detection
    if result.evaluation:
        uns["evaluation"] = h5_plain(result.evaluation)
    if result.cluster_table is not None:
        uns["cluster_table"] = result.cluster_table.astype({"cluster": str, "label": str})
    out.uns.pop("scembed_liftover", None)  # recorded under uns["scembed"]["liftover"]
    out.uns["scembed"] = h5_plain(uns)
    return out


def h5_plain(value):
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


def results_frame(result: PipelineResult) -> pd.DataFrame:
    """Tidy per-cell results (cell, cluster, label, confidence, UMAP, coverage)."""
    out = annotated_adata(result)
    columns = [c for c in out.obs.columns if c.startswith("scembed_")]
    frame = out.obs[columns].copy()
    if result.labels is not None:
        for column in probability_columns(result.labels):
            frame[probability_csv_name(column)] = result.labels[column].to_numpy()
    if "X_scembed_umap" in out.obsm:
        frame["umap_1"], frame["umap_2"] = out.obsm["X_scembed_umap"].T
    frame.index.name = "cell"
    return frame


def probability_csv_name(column: str) -> str:
    """CSV column of a class probability: ``prob:B`` -> ``scembed_prob_B``."""
    from .labeling import PROBABILITY_PREFIX

    return "scembed_prob_" + column.removeprefix(PROBABILITY_PREFIX)


def write_results(result: PipelineResult, path: str | Path, *, csv: bool = False) -> list[Path]:
    """Write the annotated ``.h5ad`` (and a per-cell CSV beside it when ``csv``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    annotated_adata(result).write_h5ad(path, compression="gzip")
    written = [path]
    if csv:
        csv_path = path.with_suffix(".csv")
        results_frame(result).to_csv(csv_path)
        written.append(csv_path)
    return written
