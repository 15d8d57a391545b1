"""The map fit's nearest neighbours above ``EXACT_MAX_CELLS`` cells, from an hnswlib index.

Split from :mod:`scembed_core.refmap` (which re-exports :func:`hnsw_cosine_neighbors`):
each row's ``k`` nearest rows, itself first, searched in the reference's own index or in
one built here, chunk by chunk, each chunk reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._types import ProgressCallback
from .errors import ParameterError
from .stopping import check_stop

__all__ = ["hnsw_cosine_neighbors", "self_first"]


def _step(report: ProgressCallback, fraction: float, message: str) -> None:
    report(fraction, message)
    check_stop("The map fit")


def hnsw_cosine_neighbors(
    data: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    index: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest rows by cosine distance (itself first), from an hnswlib index.

    For references above :data:`~scembed_core.mapfit.EXACT_MAX_CELLS` cells (the exact
    search is ``n^2``). The index is :func:`scembed_core.knn.build_cell_index`'s (one
    thread: one seed, one graph; ``ef_construction`` by
    :func:`~scembed_core.knn.index_ef_construction`), unless the caller passes one over
    the same rows (the reference's own index: built once for the map and the label
    transfer); it is queried in chunks, each reported.

    Parameters
    ----------
    data
        ``(n, dim)`` finite vectors.
    k
        Neighbours per row, the row itself included.
    seed
        hnswlib's ``random_seed`` (when the index is built here).
    progress
        ``progress(fraction, message)`` after every chunk inserted or queried.
    index
        A cosine index over exactly ``data``'s rows, in order (None: built here).

    Returns
    -------
    tuple of numpy.ndarray
        ``(indices, distances)`` as :func:`~scembed_core.mapfit.exact_cosine_neighbors`.
    """
    from .knn import HNSW_EF_QUERY, build_cell_index, index_ef_construction, knn_query_all_threads

    report = progress or (lambda fraction, message: None)
    data = np.ascontiguousarray(data, dtype=np.float32)
    n = data.shape[0]
    query_from = 0.0
    if index is None:
        query_from = 0.7
        index = build_cell_index(
            data,
            seed=seed,
            ef_construction=index_ef_construction(n),
            progress=lambda f, m: _step(report, query_from * f, f"kNN index: {m}"),
        )
        if hasattr(index, "set_ef"):  # not the exact fallback (no hnswlib)
            index.set_ef(max(2 * k, HNSW_EF_QUERY))
    elif index.get_current_count() != n:
        raise ParameterError(f"The index holds {index.get_current_count():,} cells, not {n:,}.")

    def searched(fraction: float, message: str) -> None:
        report(query_from + (1 - query_from) * fraction, message)
        check_stop("The map fit")

    # data are finite (the map's cells), so knn_query's NaN rows never occur here
    indices, distances = knn_query_all_threads(index, data, k, progress=searched)
    indices, distances = indices.astype(np.int32), distances.astype(np.float32)
    return self_first(indices, distances)


def self_first(indices: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put each row itself first at distance 0, the others nearest first, clipped to [0, 2].

    A row absent from its own result replaces its last neighbour.

    Parameters
    ----------
    indices, distances
        ``(n, k)`` neighbours of rows ``0 .. n - 1`` among the same rows and their cosine
        distances (a self-query).

    Returns
    -------
    tuple of numpy.ndarray
        int32 indices and float32 distances, reordered.
    """
    indices = np.array(indices, dtype=np.int32)
    distances = np.array(distances, dtype=np.float32)
    n = len(indices)
    rows = np.arange(n)[:, None]
    is_self = indices == rows
    missing = ~is_self.any(axis=1)
    indices[missing, -1] = np.flatnonzero(missing)
    distances[missing, -1] = 0.0
    is_self = indices == rows
    distances[is_self] = 0.0
    key = np.where(is_self, -1.0, distances.astype(np.float64))
    order = np.argsort(key, axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, axis=1)
    distances = np.clip(np.take_along_axis(distances, order, axis=1), 0.0, 2.0)
    return indices, distances
