"""The whole annotation run: project, cluster, transfer labels, vote per cluster, evaluate.

What the ``project`` command runs: the verbs of :mod:`scembed_core.tl` in a row on a copy
of the query (after lifting its peaks onto the reference's build when needed):
``tl.project``, ``tl.neighbors``, ``tl.cluster``, ``tl.transfer_labels``,
``tl.annotate_clusters``. So ``python -m scembed_core project`` and ``se.tl.*`` are one
code path; the app calls the same verbs one by one through its cache layer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import results, tl
from ._types import ProgressCallback
from .cluster import n_clusters_of

if TYPE_CHECKING:
    import anndata as ad

    from .reference import Reference

__all__ = [
    "PipelineResult",
    "run_pipeline",
    "annotated_adata",
    "write_results",
    "write_evidence",
    "results_frame",
]


@dataclass
class PipelineResult:
    """One run's results: the annotated query, with convenient views of its keys.

    ``adata`` holds everything under the keys of :mod:`scembed_core.results`; the
    properties read them back.
    """

    adata: ad.AnnData

    @property
    def _uns(self) -> dict:
        return self.adata.uns["scembed"]

    @property
    def embedding(self) -> np.ndarray:
        """E-projection, ``obsm["X_scembed"]``."""
        return np.asarray(self.adata.obsm[results.EMBEDDING])

    @property
    def umap(self) -> np.ndarray | None:
        """Positions on the reference map, ``obsm["X_scembed_umap"]`` (None without a map)."""
        return self.adata.obsm.get(results.UMAP)

    @property
    def clusters(self) -> np.ndarray:
        """Cluster number of each cell (-1: no embedding)."""
        return results.cluster_codes(self.adata)

    @property
    def n_clusters(self) -> int:
        """Number of clusters found."""
        return n_clusters_of(self.clusters)

    @property
    def resolution(self) -> float:
        """The resolution used (found by the search when ``n_clusters`` was given)."""
        return float(self._uns[results.CLUSTER]["params"]["resolution"])

    @property
    def resolution_curve(self) -> pd.DataFrame | None:
        """Clusters per resolution of the search (None without one)."""
        return self._uns[results.CLUSTER].get("resolution_curve")

    @property
    def labels(self) -> pd.DataFrame | None:
        """The transferred labels (:func:`~scembed_core.labels.assign.assign_labels` columns)."""
        return results.labels_frame(self.adata)

    @property
    def cluster_table(self) -> pd.DataFrame | None:
        """One row per cluster: majority label, agreement, absent-type check."""
        return results.cluster_table_of(self.adata)

    @property
    def params(self) -> dict:
        """The run's settings, ``uns["scembed"]["params"]``."""
        return self._uns["params"]

    @property
    def coverage(self) -> dict:
        """Peak-mapping summary and its warnings, ``uns["scembed"]["coverage"]``."""
        return self._uns["coverage"]

    @property
    def evaluation(self) -> dict:
        """Scores against the truth column (empty without one)."""
        return self._uns.get("evaluation", {})

    @property
    def fit(self) -> dict | None:
        """The dataset verdict, ``uns["scembed"]["fit"]`` (:mod:`scembed_core.fit`)."""
        return self._uns.get("fit")

    @property
    def liftover(self) -> dict | None:
        """What the liftover did, when the peaks were lifted."""
        return self._uns.get("liftover")

    @property
    def build_detection(self) -> dict | None:
        """The genome build detected from the peaks."""
        return self._uns.get("build_detection")


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
    unknown_rate: float | None = None,
    label_map: dict[str, str] | None = None,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
    query_genome: str = "auto",
    liftover: bool = True,
    seed: int | None = None,
) -> PipelineResult:
    """Project ``adata`` onto ``reference``, cluster it and transfer labels.

    Parameters mirror the ``project`` command; ``resolution`` defaults to 1.0 unless
    ``n_clusters`` asks for a resolution search. ``k_neighbors`` reference neighbours vote
    on labels and give the mapping distance; ``n_neighbors`` is the query kNN graph's k
    (the graph that is clustered). ``truth_key`` names a query obs column to
    score clusters (ARI/AMI/homogeneity) and labels (accuracy, F1) against, the reference
    labels renamed by ``label_map`` (reference label -> the column's name) first.
    ``query_genome`` (``auto``, ``hg19``, ``hg38``) and ``liftover`` decide whether the
    peaks are first lifted onto the reference's build
    (:func:`scembed_core.liftover.query.prepare_query`); what was done is recorded in
    ``uns["scembed"]["liftover"]``.
    ``label_method`` is ``"classifier"`` (the reference's label model, or the kNN vote with
    a note in ``params["label_note"]`` when it has none) or ``"knn"``; see
    :func:`scembed_core.labels.assign.assign_labels`.

    ``unknown_rate`` is the Unknown rule's strictness (share of known cells it may call
    Unknown; None: the reference's calibrated rate, 0: off).

    ``random_state`` seeds the graph and the community detection (``seed`` is its
    deprecated name).

    The input is left unchanged; the results are in ``PipelineResult.adata``.

    Parameters
    ----------
    adata
        The query (cells x peaks).
    reference
        The reference.
    ev, resolution, n_clusters, method, k_neighbors, n_neighbors, min_confidence
        See above.
    max_mapping_distance, label_key, label_method, truth_key, random_state
        See above.
    unknown_rate
        See above.
    progress
        ``progress(fraction, message)`` callback.
    query_genome, liftover
        See above.
    seed
        Deprecated name of ``random_state``.

    Returns
    -------
    PipelineResult
        The annotated copy of the query.
    """
    from .errors import ParameterError, renamed_keyword
    from .evaluate import classification_report, clustering_scores
    from .fit import assess_fit, with_unknown
    from .liftover.query import prepare_query

    random_state = int(renamed_keyword("seed", seed, "random_state", random_state, 0))
    report = progress or (lambda fraction, message: None)
    report(0.0, "Checking the genome build")
    prepared = prepare_query(adata, reference, query_genome=query_genome, liftover=liftover)
    if truth_key is not None and truth_key not in prepared.adata.obs:
        raise ParameterError(
            f"Truth column {truth_key!r} is not in the query's obs columns "
            f"{list(prepared.adata.obs.columns)}."
        )
    report(0.02, "Checking how well the dataset fits the reference")
    fit = assess_fit(
        prepared.adata,
        reference,
        detection=prepared.detection,
        detect=False,
        lifted_from=(prepared.liftover or {}).get("source_build"),
    )
    out = prepared.adata.copy()
    tl.project(
        out,
        reference,
        ev=ev,
        n_neighbors=k_neighbors,
        query_genome=prepared.query_build,
        progress=lambda f, m: report(0.7 * f, m),
    )
    report(0.75, "Clustering (kNN graph + Louvain)")
    tl.neighbors(out, n_neighbors, random_state=random_state)
    tl.cluster(out, resolution, n_clusters, method=method, random_state=random_state)
    if reference.can_transfer_labels:
        report(0.9, "Transferring labels from the reference")
        tl.transfer_labels(
            out,
            reference,
            method=label_method,
            label_key=label_key,
            n_neighbors=k_neighbors,
            min_confidence=min_confidence,
            max_mapping_distance=max_mapping_distance,
            unknown_rate=unknown_rate,
            warn=False,
        )
        tl.annotate_clusters(out, reference)
        if "scembed_unknown" in out.obs:
            mapped = ~out.obs["scembed_unmapped"].to_numpy(dtype=bool)
            unknown = out.obs["scembed_unknown"].to_numpy(dtype=bool)[mapped]
            fit = with_unknown(fit, float(unknown.mean()) if mapped.any() else 0.0)
    evaluation = {}
    if truth_key is not None:
        truth = out.obs[truth_key]
        evaluation["clustering"] = clustering_scores(truth, results.cluster_codes(out))
        if results.LABEL in out.obs:
            predicted = out.obs[results.LABEL].astype(str)
            scored = classification_report(truth, predicted, label_map=label_map)
            evaluation["labels"] = scored.summary()
    detection = prepared.detection.summary() if prepared.detection is not None else None
    results.write_run_facts(
        out, liftover=prepared.liftover, build_detection=detection, evaluation=evaluation, fit=fit
    )
    report(1.0, "Done")
    return PipelineResult(out)


def annotated_adata(result: PipelineResult) -> ad.AnnData:
    """Return a copy of the annotated query (keys in :mod:`scembed_core.results`).

    Parameters
    ----------
    result
        A pipeline run.

    Returns
    -------
    anndata.AnnData
        The copy.
    """
    return result.adata.copy()


def results_frame(result: PipelineResult) -> pd.DataFrame:
    """Tidy per-cell results (:func:`scembed_core.results.cell_table`)."""
    return results.cell_table(result.adata)


def write_results(result: PipelineResult, path: str | Path, *, csv: bool = False) -> list[Path]:
    """Write the annotated ``.h5ad`` (and a per-cell CSV beside it when ``csv``)."""
    written = [results.write_h5ad(result.adata, path)]
    if csv:
        csv_path = Path(path).with_suffix(".csv")
        results.cell_table(result.adata).to_csv(csv_path)
        written.append(csv_path)
    return written


def write_evidence(
    adata: ad.AnnData,
    reference: Reference,
    gene_activity_path: str | Path | None = None,
    markers_path: str | Path | None = None,
) -> list[Path]:
    """Run the evidence verbs for ``scembed project`` (the second opinion always).

    Parameters
    ----------
    adata
        The annotated query (with its cluster table when labels were transferred);
        updated in place.
    reference
        The reference it was projected onto.
    gene_activity_path
        Write the cells x genes activity here (``.h5ad``).
    markers_path
        Write the clusters' marker table here (``.csv``).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ParameterError
        If gene activity is asked for on a build without an annotation.
    """
    from .errors import ParameterError
    from .genes import GENOMES
    from .tl import gene_activity, rank_regions, second_opinion

    written: list[Path] = []
    genome = reference.genome if reference.genome in GENOMES else None
    if results.cluster_table_of(adata) is not None:
        second_opinion(adata, reference)
        table = results.cluster_table_of(adata)
        disagree = ~table["markers_agree"].astype(bool) if "markers_agree" in table else []
        for _, row in table.loc[disagree].iterrows():
            print(
                f"note: cluster {row['cluster']} is labelled {row['label']} but its "
                f"accessibility best matches {row['second_opinion']} (second opinion)",
                file=sys.stderr,
            )
    if gene_activity_path:
        if genome is None:
            raise ParameterError(f"No gene annotation for the build {reference.genome!r}.")
        activity = gene_activity(adata, genome=genome)
        written.append(results.write_h5ad(activity, gene_activity_path))
    if markers_path:
        rank_regions(adata, genome=genome)
        adata.uns["scembed"]["markers"].to_csv(markers_path, index=False)
        written.append(Path(markers_path))
    return written
