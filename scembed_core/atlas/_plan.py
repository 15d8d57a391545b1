"""What each chunk task is given: the plan (small, sent with each task) and the peak mapping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._input import InputLayout

MARKERS_KEY = "uns/scembed_chunks_done"


@dataclass(frozen=True)
class Plan:
    """Everything a chunk task needs besides the peak mapping (small; sent with each task)."""

    source: InputLayout
    out: str
    chunk_size: int
    n_chunks: int
    reference_path: str | None
    reference_key: str | None  # files_key of the driver's reference: workers' copies must match
    trust: bool
    k_neighbors: int
    label_key: str | None
    label_method: str  # the method that runs (resolved once on the driver)
    label_classes: tuple[str, ...]  # column order of obsm["scembed_label_probabilities"]
    min_confidence: float
    max_mapping_distance: float | None
    outlier_threshold: float | None
    ev: bool
    has_cells: bool
    categories: tuple[str, ...]
    umap_epochs: int | None
    analysis_dim: int | None  # dimension of the reference's whitened analysis space, if any
    unknown_rate: float | None = None  # the Unknown rule's strictness (None: calibrated)


@dataclass(frozen=True)
class SharedMapping:
    """CSR structure of the peaks x universe overlap matrix (scattered to workers once)."""

    indptr: np.ndarray
    indices: np.ndarray
