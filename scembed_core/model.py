"""What every reference is made of, with no I/O: region embeddings and the analysis space.

:class:`RegionModel` (the region vocabulary and one vector per region) is what a geniml model,
a hub model and a scEmbed bundle all provide; :class:`Whitening` is the frozen analysis space
fitted on a full reference's cells. Both sit below the bundle format, the geniml reader and
the hub, which build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ReferenceBundleError
from .regions import GenomicRegions

__all__ = ["RegionModel", "Whitening"]


@dataclass
class RegionModel:
    """Region embeddings over a universe: the part of scEmbed every reference has.

    Attributes
    ----------
    universe
        The region vocabulary; region ``i`` has vector ``vectors[i]``.
    vectors
        ``(n_regions, dim)`` float32 embeddings.
    trained
        Regions that carry a learned vector; the others are excluded from pooling.
    metadata
        Free-form facts: genome, source, training parameters, format.
    """

    universe: GenomicRegions
    vectors: np.ndarray
    trained: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.trained = np.asarray(self.trained, dtype=bool)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.universe):
            raise ReferenceBundleError(
                f"Region vectors have shape {self.vectors.shape} but the universe has "
                f"{len(self.universe)} regions; expected ({len(self.universe)}, dim)."
            )
        if self.trained.shape != (len(self.universe),):
            raise ReferenceBundleError(
                f"The trained mask has {self.trained.shape[0]} entries for "
                f"{len(self.universe)} regions."
            )

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.vectors.shape[1])

    @property
    def pooling(self) -> str:
        """How a cell's region vectors are combined: ``"mean"`` (default) or ``"max"``."""
        return str(self.metadata.get("pooling") or "mean")


@dataclass
class Whitening:
    """PCA whitening fitted on the reference cell embeddings (the analysis space).

    Mean-pooled word vectors share a few dominant directions, which crowd cosine
    similarities together. Centring on the reference mean, keeping the top principal
    components and scaling each to unit variance (Su et al. 2021, "Whitening sentence
    representations") makes cosine kNN far more discriminative; it is fitted once on the
    reference cells and frozen with the bundle, like the UMAP model.

    Attributes
    ----------
    mean
        ``(dim,)`` mean of the reference cell embeddings.
    matrix
        ``(dim, n_components)`` principal axes divided by their standard deviations.
    """

    mean: np.ndarray
    matrix: np.ndarray

    @classmethod
    def fit(cls, embedding: np.ndarray, n_components: int = 20) -> Whitening:
        """Fit on reference embeddings (rows must be finite).

        At most a quarter of the embedding dimensions are kept: whitening every direction
        would blow the noise directions up to the same scale as the signal. A kept direction
        with no variance (standard deviation below 1e-6 of the largest, i.e. rounding noise:
        fewer distinct cells than components) is not rescaled.
        """
        x = np.asarray(embedding, dtype=np.float64)
        mean = x.mean(axis=0)
        cap = min(n_components, max(1, x.shape[1] // 4), x.shape[0] - 1)
        n_components = int(max(1, cap))
        _, singular, axes = np.linalg.svd(x - mean, full_matrices=False)
        scale = singular[:n_components] / np.sqrt(max(len(x) - 1, 1))
        floor = scale[0] * 1e-6 if scale.size else 0.0
        matrix = axes[:n_components].T / np.where(scale > floor, scale, 1.0)
        return cls(mean.astype(np.float32), matrix.astype(np.float32))

    def transform(self, embedding: np.ndarray) -> np.ndarray:
        """Whitened coordinates; NaN rows stay NaN.

        Computed row by row in float64 (``einsum``, no BLAS blocking) and cast to float32,
        so a cell's coordinates are bit-identical whatever else is in the batch (a BLAS
        matmul's summation order depends on the batch size).
        """
        x = np.asarray(embedding, dtype=np.float32).astype(np.float64) - self.mean
        white = np.einsum("ij,jk->ik", x, np.asarray(self.matrix, dtype=np.float64))
        return white.astype(np.float32)
