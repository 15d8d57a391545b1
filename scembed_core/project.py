"""E-projection (pooling region embeddings into cell embeddings) and EV-projection.

E-projection maps a new dataset's peaks onto the reference universe once (a sparse
peaks x universe matrix), turns the cells x peaks matrix into a binary cells x universe
matrix with one sparse product, and averages the trained region vectors of each cell's
regions, all as chunked sparse algebra. EV-projection places those cells on the
reference's map with umap-learn's transform, reimplemented on the bundle's arrays
(:mod:`scembed_core.evmap`; no umap-learn, no pickle).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._kernels import pool_cells
from ._types import ProgressCallback
from .errors import EmptyDataError, ParameterError
from .regions import (
    GenomicRegions,
    PeakMapping,
    binary_signal,
    cells_by_universe,
    map_peaks_to_universe,
)

if TYPE_CHECKING:
    import anndata as ad

    from .evmap import MapTransform
    from .model import RegionModel
    from .reference import Reference

__all__ = [
    "Coverage",
    "Projection",
    "compute_coverage",
    "pool_region_vectors",
    "embed_cells",
    "project",
    "ev_project",
    "ev_transform",
    "warm_ev",
    "embedding_umap",
    "regions_of",
]

#: Below this fraction of query peaks overlapping the universe, coverage is called low.
LOW_COVERAGE_FRACTION = 0.2


def regions_of(adata: ad.AnnData) -> GenomicRegions:
    """Return the peaks of a dataset read by :func:`scembed_core.io.read_dataset`.

    Parameters
    ----------
    adata
        Cells x peaks, coordinates in ``var`` (or in the peak names).

    Returns
    -------
    GenomicRegions
        One region per peak.
    """
    if {"chr", "start", "end"} <= set(adata.var.columns):
        return GenomicRegions.from_frame(adata.var[["chr", "start", "end"]])
    return GenomicRegions.from_names(adata.var_names)


@dataclass
class Coverage:
    """How well a query dataset's peaks cover the reference universe.

    Attributes
    ----------
    mapping
        The peaks x universe overlap matrix and chromosome-naming diagnostics.
    signal
        Binary cells x peaks matrix (explicit zeros and non-positive values removed).
    n_regions_per_cell
        Number of *trained* universe regions each cell covers (the regions pooled).
    warnings
        Human-readable warnings (low coverage, renamed chromosomes, likely build mismatch).
    """

    mapping: PeakMapping
    signal: sp.csr_matrix
    n_regions_per_cell: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def cell_regions(self) -> sp.csr_matrix:
        """Binary cells x universe matrix (computed on demand; the hot path never builds it)."""
        return cells_by_universe(self.signal, self.mapping)

    @property
    def fraction_peaks_mapped(self) -> float:
        """Fraction of query peaks that overlap at least one universe region."""
        return self.mapping.fraction_mapped

    @property
    def unmapped_cells(self) -> np.ndarray:
        """Boolean mask of cells that cover no trained universe region."""
        return self.n_regions_per_cell == 0

    @property
    def n_unmapped_cells(self) -> int:
        """Number of cells that cover no trained universe region."""
        return int(self.unmapped_cells.sum())

    def summary(self) -> dict:
        """Plain-data summary for reports, ``uns`` and the app."""
        n = self.n_regions_per_cell
        return {
            **self.mapping.summary(),
            "n_cells": int(len(n)),
            "n_unmapped_cells": self.n_unmapped_cells,
            "median_regions_per_cell": float(np.median(n)) if len(n) else 0.0,
            "warnings": list(self.warnings),
        }


def mapping_warnings(
    mapping: PeakMapping,
    genome: str,
    low_coverage: float = LOW_COVERAGE_FRACTION,
    *,
    lifted_from: str | None = None,
    n_unmapped_cells: int = 0,
) -> list[str]:
    """Warn about chromosome naming, low overlap (a likely build mismatch), unmapped cells.

    The in-memory and the Dask path both report these. ``lifted_from`` names the build the peaks were lifted from, if they were: low overlap
    is then not blamed on the build. ``n_unmapped_cells`` cells cover no trained region.
    """
    warnings = []
    if mapping.renamed_chromosomes:
        pairs = ", ".join(f"{k}->{v}" for k, v in list(mapping.renamed_chromosomes.items())[:4])
        warnings.append(f"Chromosome names were reconciled with the reference ({pairs}, ...).")
    if mapping.unknown_chromosomes:
        warnings.append(
            f"{len(mapping.unknown_chromosomes)} contig(s) are absent from the reference "
            f"({', '.join(mapping.unknown_chromosomes[:5])}); their peaks are unmapped."
        )
    fraction = mapping.fraction_mapped
    if fraction < low_coverage and lifted_from:
        warnings.append(
            f"Only {fraction:.1%} of the query peaks overlap the reference universe, even "
            f"after lifting them from {lifted_from} to {genome}: the reference's regions may "
            "not cover this data's peaks (another tissue, or a sparse universe)."
        )
    elif fraction < low_coverage:
        warnings.append(
            f"Only {fraction:.1%} of the query peaks overlap the reference universe "
            f"(genome {genome}): the data were called on another peak set or are on another "
            "genome build; the dataset verdict (scembed_core.fit) tells which."
        )
    if n_unmapped_cells:
        warnings.append(
            f"{n_unmapped_cells:,} cell(s) cover no trained reference region; they get no "
            "embedding and are reported as Unassigned."
        )
    return warnings


def compute_coverage(
    adata: ad.AnnData,
    model: RegionModel | Reference,
    *,
    low_coverage: float = LOW_COVERAGE_FRACTION,
) -> Coverage:
    """Map a dataset's peaks onto the universe and summarise the coverage.

    Parameters
    ----------
    adata
        Query cells x peaks (binary or counts; signal = value > 0).
    model
        The reference (or its region model) whose universe the peaks are mapped to.
    low_coverage
        Fraction of mapped peaks under which a warning is added.
    """
    model = getattr(model, "model", model)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise EmptyDataError(f"The dataset has {adata.n_obs} cells and {adata.n_vars} peaks.")
    mapping = map_peaks_to_universe(regions_of(adata), model.universe)
    signal = binary_signal(adata.X)
    no_vectors = np.empty((len(model.universe), 0), dtype=np.float32)
    _, n_regions = pool_cells(
        signal.indptr,
        signal.indices,
        mapping.matrix.indptr,
        mapping.matrix.indices,
        no_vectors,
        model.trained,
    )
    lifted = adata.uns.get("scembed_liftover") or adata.uns.get("scembed_read", {}).get("liftover")
    warnings = mapping_warnings(
        mapping,
        model.metadata.get("genome", "unknown"),
        low_coverage,
        lifted_from=lifted.get("source_build") if lifted else None,
        n_unmapped_cells=int((n_regions == 0).sum()),
    )
    return Coverage(mapping, signal, n_regions, warnings)


def embed_cells(coverage: Coverage, model: RegionModel) -> np.ndarray:
    """E-projection from the peak mapping, without building the cells x universe matrix."""
    embedding, _ = pool_cells(
        coverage.signal.indptr,
        coverage.signal.indices,
        coverage.mapping.matrix.indptr,
        coverage.mapping.matrix.indices,
        model.vectors,
        model.trained,
        pooling=model.pooling,
    )
    return embedding


def pool_region_vectors(
    cell_regions: sp.spmatrix,
    vectors: np.ndarray,
    trained: np.ndarray,
    *,
    chunk_size: int = 50_000,
    pooling: str = "mean",
) -> np.ndarray:
    """Mean (or max) of the trained region vectors of each cell, chunk by chunk.

    Parameters
    ----------
    cell_regions
        Binary cells x universe matrix.
    vectors
        ``(n_regions, dim)`` region embeddings.
    trained
        Mask of regions with learned vectors; the others are excluded from the mean.
    chunk_size
        Cells per chunk, bounding the dense intermediate to ``chunk_size x dim``.
    pooling
        ``"mean"`` (default) or ``"max"`` (element-wise maximum over the cell's regions).

    Returns
    -------
    ``(n_cells, dim)`` float32; rows of cells with no trained region are NaN.
    """
    if chunk_size < 1:
        raise ParameterError(f"chunk_size must be >= 1, got {chunk_size}.")
    x = binary_signal(cell_regions)
    identity = np.arange(x.shape[1] + 1, dtype=np.int64)
    out = np.empty((x.shape[0], vectors.shape[1]), dtype=np.float32)
    for begin in range(0, x.shape[0], chunk_size):
        block = x[begin : begin + chunk_size]
        out[begin : begin + chunk_size], _ = pool_cells(
            block.indptr, block.indices, identity, identity[:-1], vectors, trained, pooling=pooling
        )
    return out


@dataclass
class Projection:
    """A query dataset projected onto a reference.

    Attributes
    ----------
    embedding
        E-projection: ``(n_cells, dim)`` cell embeddings; NaN rows for unmapped cells.
    coverage
        Overlap and coverage diagnostics.
    umap
        EV-projection: ``(n_cells, 2)`` coordinates on the reference map, or None.
    mapping_distance
        Mean cosine distance of each cell to its nearest reference cells (NaN if unmapped).
    mapping_outlier
        Cells farther from the reference than the reference's own 99th percentile.
    neighbors
        ``(indices, distances)`` of each cell's nearest reference cells, or None.
    timings
        Seconds spent in each stage.
    analysis
        Embeddings in the reference's whitened analysis space (None without whitening);
        used for kNN, clustering and the map.
    map_transform
        The EV-projection in full: start and final positions and, when asked, frames of a
        sample of cells moving into place (:class:`scembed_core.evmap.MapTransform`).
    mapping_distance_threshold
        The reference's own 99th percentile of mapping distances over the same number
        of neighbours (the bar of ``mapping_outlier``), or None without reference cells.
    """

    embedding: np.ndarray
    coverage: Coverage
    umap: np.ndarray | None = None
    mapping_distance: np.ndarray | None = None
    mapping_outlier: np.ndarray | None = None
    neighbors: tuple[np.ndarray, np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    analysis: np.ndarray | None = None
    map_transform: MapTransform | None = None
    mapping_distance_threshold: float | None = None

    @property
    def space(self) -> np.ndarray:
        """Embeddings in the reference's analysis space (whitened when it has one)."""
        return self.embedding if self.analysis is None else self.analysis

    @property
    def valid(self) -> np.ndarray:
        """Mask of cells with an embedding (at least one trained region)."""
        return ~np.isnan(self.embedding).any(axis=1)


def ev_transform(
    embedding: np.ndarray,
    reference: Reference,
    *,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int | None = None,
    n_epochs: int | None = None,
    n_frames: int = 0,
    max_sampled: int = 2000,
) -> MapTransform:
    """Place cells on the reference map (umap-learn's transform on the bundle's arrays).

    Parameters
    ----------
    embedding
        E-projection embeddings; NaN rows (unmapped cells) stay NaN.
    reference
        A reference with cells and a map (:attr:`Reference.can_ev_project`).
    neighbors
        ``(indices, distances)`` of each cell's nearest reference cells, when already
        searched (reused if it has at least the map's ``n_neighbors`` columns).
    seed
        Seed of umap's negative sampling (default: the map's ``transform_seed``, 42).
    n_epochs
        Override umap's epoch rule (chunked callers pass the whole dataset's count).
    n_frames, max_sampled
        Intermediate frames of a sample of cells, for an animation.
    """
    from .evmap import transform

    if not reference.can_ev_project:
        raise ParameterError(
            "This reference has no map (reference cells with map coordinates and map.json), "
            "so EV-projection is not possible. Build a full reference from a labelled "
            "dataset first."
        )
    params = reference.map_params
    k = params.n_neighbors
    if neighbors is None or neighbors[0].shape[1] < min(k, reference.n_cells):
        from .labels.vote import query_reference_neighbors

        neighbors = query_reference_neighbors(reference, embedding, k=k)
    indices, distances = neighbors[0][:, :k], neighbors[1][:, :k]
    return transform(
        indices,
        distances,
        reference.map_coords,
        params,
        seed=seed,
        n_epochs=n_epochs,
        n_frames=n_frames,
        max_sampled=max_sampled,
    )


def ev_project(
    embedding: np.ndarray,
    reference: Reference,
    *,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int | None = None,
    n_epochs: int | None = None,
) -> np.ndarray:
    """``(n_cells, 2)`` float32 positions on the reference map; NaN rows stay NaN.

    See :func:`ev_transform` for the parameters.
    """
    return ev_transform(
        embedding, reference, neighbors=neighbors, seed=seed, n_epochs=n_epochs
    ).coords


def warm_ev() -> float:
    """Compile (or load from the on-disk cache) the EV-projection kernels; seconds taken."""
    from .evmap import warm

    return warm()


def embedding_umap(embedding: np.ndarray, *, seed: int = 42) -> np.ndarray:
    """UMAP of a dataset's own embeddings (not the reference map); NaN rows stay NaN.

    The paper's settings: umap-learn, 2-D, ``random_state=42``, package defaults otherwise.
    """
    import umap

    embedding = np.asarray(embedding, dtype=np.float32)
    valid = np.isfinite(embedding).all(axis=1)
    coords = np.full((len(embedding), 2), np.nan, dtype=np.float32)
    if valid.sum() >= 3:
        model = umap.UMAP(n_neighbors=min(15, int(valid.sum()) - 1), random_state=seed)
        coords[valid] = model.fit_transform(embedding[valid])
    return coords


def project(
    adata: ad.AnnData,
    reference: Reference,
    *,
    ev: bool = True,
    k_neighbors: int = 15,
    coverage: Coverage | None = None,
    n_frames: int = 0,
    progress: ProgressCallback | None = None,
) -> Projection:
    """E-project (and optionally EV-project) a query dataset onto a reference.

    Parameters
    ----------
    adata
        Query cells x peaks with ``var`` coordinates.
    reference
        A loaded reference.
    ev
        Also place the cells on the reference UMAP (needs a reference with cells).
    k_neighbors
        Reference neighbours used for the mapping distance.
    coverage
        The result of :func:`compute_coverage` for this dataset and reference, when it was
        already computed (e.g. for a QC view), so peaks are not mapped twice.
    n_frames
        Also record this many frames of (a sample of) the cells moving into place on the
        map, for an animation (``Projection.map_transform``).
    progress
        ``progress(fraction, message)`` callback, called once per stage.
    """
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    report(0.0, "Mapping peaks onto the reference universe")
    if coverage is None:
        coverage = compute_coverage(adata, reference)
    timings["map_peaks"] = time.perf_counter() - started

    started = time.perf_counter()
    report(0.25, "E-projection: pooling region embeddings")
    embedding = embed_cells(coverage, reference.model)
    timings["e_projection"] = time.perf_counter() - started
    result = Projection(embedding=embedding, coverage=coverage, timings=timings)
    if getattr(reference, "whitening", None) is not None:
        result.analysis = reference.analysis_space(embedding)

    if reference.cells is not None:
        started = time.perf_counter()
        report(0.45, "Finding nearest reference cells")
        from .labels.vote import (
            mapping_distance_threshold,
            query_reference_neighbors,
            row_mean_ignoring_nan,
        )

        indices, distances = query_reference_neighbors(reference, embedding, k=k_neighbors)
        result.neighbors = (indices, distances)
        result.mapping_distance = row_mean_ignoring_nan(distances)
        threshold = mapping_distance_threshold(reference, indices.shape[1])
        if threshold is not None:
            result.mapping_distance_threshold = float(threshold)
            result.mapping_outlier = result.mapping_distance > float(threshold)
        timings["neighbors"] = time.perf_counter() - started

    if ev and reference.can_ev_project:
        started = time.perf_counter()
        report(0.7, "EV-projection: placing cells on the reference map")
        result.map_transform = ev_transform(
            embedding, reference, neighbors=result.neighbors, n_frames=n_frames
        )
        result.umap = result.map_transform.coords
        timings["ev_projection"] = time.perf_counter() - started
    report(1.0, "Projection done")
    return result


def projection_frame(adata: ad.AnnData, projection: Projection) -> pd.DataFrame:
    """Per-cell coverage and mapping columns, indexed by cell name."""
    frame = pd.DataFrame(index=adata.obs_names)
    frame["scembed_n_regions"] = projection.coverage.n_regions_per_cell
    frame["scembed_unmapped"] = projection.coverage.unmapped_cells
    if projection.mapping_distance is not None:
        frame["scembed_mapping_distance"] = projection.mapping_distance
    if projection.mapping_outlier is not None:
        frame["scembed_mapping_outlier"] = projection.mapping_outlier
    return frame
