"""A 2-D layout of a dataset's own embedding that needs no optimisation: the spectral layout.

The Laplacian eigenmap of the cells' cosine kNN graph: the two leading non-trivial
eigenvectors of the random-walk matrix ``D^-1 A``. It is what UMAP starts its optimisation
from (``init="spectral"``), computed in a fraction of a second for thousands of cells (one
kNN search and a sparse eigensolver), with no random epochs, no numba compilation and the
same result on every run. The app draws it for the query's own structure; a UMAP fit
(:func:`scembed_core.project.embedding_umap`) takes seconds to minutes on a small machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["spectral_layout", "graph_layout"]

#: Below this many cells the eigenvectors come from a dense solver (ARPACK needs k < n).
_DENSE_MAX = 200


def spectral_layout(embedding: np.ndarray, *, n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """Lay out cells in 2-D by the leading eigenvectors of their kNN graph.

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` cell embeddings; rows with a NaN are left out (and stay NaN).
    n_neighbors
        Neighbours per cell in the cosine kNN graph (the clustering's graph,
        :func:`scembed_core.cluster.knn_matrices`).
    seed
        Seed of the neighbour search (for large inputs) and the eigensolver's start.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, 2)`` float32 coordinates scaled to ``[-10, 10]`` per axis (as umap's
        spectral initialisation); NaN for rows without a finite embedding, all NaN when
        fewer than 3 cells have one.
    """
    from .cluster import knn_matrices

    embedding = np.asarray(embedding, dtype=np.float32)
    valid = np.isfinite(embedding).all(axis=1)
    if valid.sum() < 3:
        return np.full((len(embedding), 2), np.nan, dtype=np.float32)
    _, connectivities = knn_matrices(embedding, n_neighbors, seed=seed)
    return graph_layout(connectivities, valid, seed=seed)


def graph_layout(connectivities: Any, valid: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Lay out an existing kNN graph (e.g. the one the clusters came from) spectrally.

    Parameters
    ----------
    connectivities
        ``(n_cells, n_cells)`` symmetric sparse edge weights (``obsp["connectivities"]`` of
        :func:`scembed_core.tl.neighbors`).
    valid
        Cells that are vertices (those with an embedding); the others stay NaN.
    seed
        Seed of the eigensolver's start vector.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, 2)`` float32 coordinates, as :func:`spectral_layout`.
    """
    import scipy.sparse as sp

    valid = np.asarray(valid, dtype=bool)
    coords = np.full((len(valid), 2), np.nan, dtype=np.float32)
    n = int(valid.sum())
    if n < 3:
        return coords
    adjacency = sp.csr_matrix(connectivities)[valid][:, valid]
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    normalized = sp.diags(scale) @ adjacency @ sp.diags(scale)  # D^-1/2 A D^-1/2
    if n <= _DENSE_MAX:
        values, vectors = np.linalg.eigh(normalized.toarray())
    else:
        from scipy.sparse.linalg import eigsh

        start = np.random.default_rng(seed).uniform(0.5, 1.5, n)
        values, vectors = eigsh(normalized, k=3, which="LA", v0=start, tol=1e-6)
    order = np.argsort(values)[::-1]
    layout = vectors[:, order[1:3]] * scale[:, None]  # random-walk eigenvectors 2 and 3
    flip = np.sign(layout[np.abs(layout).argmax(axis=0), [0, 1]])  # a fixed orientation
    layout = layout * np.where(flip == 0, 1.0, flip)
    span = np.abs(layout).max(axis=0)
    coords[valid] = (10.0 * layout / np.where(span > 0, span, 1.0)).astype(np.float32)
    return coords
