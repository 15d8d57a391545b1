"""The cosine kNN index over cells: build, load, query (no other engine module needed).

hnswlib (approximate, fast) when it is importable, exact scikit-learn brute force otherwise.
The reference's index, cluster graphs and the label model's kNN blend all use it; it sits
below every other engine module, so none of them needs another to search neighbours.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._types import ProgressCallback
from .errors import ParameterError, ReferenceBundleError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "HNSW_EF_QUERY",
    "ExactCosineIndex",
    "build_cell_index",
    "index_ef_construction",
    "load_cell_index",
    "knn_query",
    "knn_query_hiding",
    "knn_query_all_threads",
    "drop_self_neighbors",
]

HNSW_EF_CONSTRUCTION = 200
#: ``ef_construction`` of indexes over more than :data:`LARGE_INDEX_ABOVE` cells: on
#: 100,000 cells 7.7 s to build on one thread instead of 19.1 s, recall of the exact 15
#: nearest 0.9996 instead of 1.0 (BENCHMARKS.md, ``mapfit_own``).
HNSW_EF_CONSTRUCTION_LARGE = 100
LARGE_INDEX_ABOVE = 60_000
HNSW_M = 16
HNSW_EF_QUERY = 100


def index_ef_construction(n_cells: int) -> int:
    """Return hnswlib's ``ef_construction`` for an index over ``n_cells`` cells (one rule).

    The reference build and the bundle loader's rebuild both take it from here, so they
    build the same graph.

    Parameters
    ----------
    n_cells
        Cells inserted.

    Returns
    -------
    int
        :data:`HNSW_EF_CONSTRUCTION` (200) up to :data:`LARGE_INDEX_ABOVE` (60,000) cells,
        :data:`HNSW_EF_CONSTRUCTION_LARGE` (100) above.
    """
    return HNSW_EF_CONSTRUCTION if n_cells <= LARGE_INDEX_ABOVE else HNSW_EF_CONSTRUCTION_LARGE


def _hnswlib() -> ModuleType | None:
    try:
        import hnswlib
    except ImportError:  # exact search below stands in
        return None
    return hnswlib


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


class ExactCosineIndex:
    """Exact cosine kNN with scikit-learn: the fallback when hnswlib is not importable."""

    def __init__(self, data: np.ndarray) -> None:
        from sklearn.neighbors import NearestNeighbors

        self.n = len(data)
        self._unit = _unit_rows(data)
        self._nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(self._unit)

    def knn_query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` nearest cells: indices and cosine distances, hnswlib style.

        Parameters
        ----------
        queries
            ``(n, dim)`` query rows.
        k
            Neighbours per row.

        Returns
        -------
        tuple of numpy.ndarray
            ``(n, k)`` indices and float32 cosine distances.
        """
        distances, indices = self._nn.kneighbors(_unit_rows(queries), n_neighbors=k)
        return indices, distances.astype(np.float32)

    def knn_query_hiding(
        self, queries: np.ndarray, k: int, hidden: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` nearest cells that are not ``hidden`` (exact search).

        Parameters
        ----------
        queries
            ``(n, dim)`` query rows.
        k
            Neighbours per row.
        hidden
            Indexed cells never returned.

        Returns
        -------
        tuple of numpy.ndarray
            ``(n, k)`` indices (into the whole index) and float32 cosine distances.
        """
        from sklearn.neighbors import NearestNeighbors

        shown = np.setdiff1d(np.arange(self.n), hidden)
        nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(self._unit[shown])
        distances, indices = nn.kneighbors(_unit_rows(queries), n_neighbors=k)
        return shown[indices], distances.astype(np.float32)

    def get_current_count(self) -> int:
        """Count the indexed cells.

        Returns
        -------
        int
            The number of cells in the index.
        """
        return self.n


def build_cell_index(
    embedding: np.ndarray,
    *,
    seed: int = 0,
    threads: int = 1,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    progress: ProgressCallback | None = None,
) -> Any:
    """Build a cosine kNN index over reference cell embeddings.

    Uses hnswlib (approximate, fast); falls back to exact scikit-learn search when hnswlib
    is not importable. Rows must be finite. One thread by default: hnswlib inserting from
    several threads builds a different graph each time (so other neighbours at ties), and
    a bundle's index is rebuilt when it is loaded, so the app's trained reference and the
    command line on its bundle would disagree (``tests/test_reproduce.py``). The cells are
    inserted in ten chunks, in order (on one thread the same graph as one call), each one
    reported. The reference's index and the map fit's neighbours above
    :data:`~scembed_core.mapfit.EXACT_MAX_CELLS` cells both come from here.

    Parameters
    ----------
    embedding
        ``(n, dim)`` finite cell vectors.
    seed
        hnswlib's ``random_seed``.
    threads
        Insertion threads (1: one graph per seed).
    ef_construction
        hnswlib's ``ef_construction``. A reference's index passes
        :func:`index_ef_construction` of its cell count (the build, the bundle loader's
        rebuild and a map fitted alone); other indexes (a query's own kNN graph) keep
        :data:`HNSW_EF_CONSTRUCTION`.
    progress
        ``progress(fraction, message)`` after every chunk inserted.

    Returns
    -------
    Any
        An ``hnswlib.Index`` (query ``ef`` :data:`HNSW_EF_QUERY`) or an
        :class:`ExactCosineIndex`.

    Raises
    ------
    ParameterError
        A row is not finite.
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    if not np.isfinite(embedding).all():
        raise ParameterError("Reference cell embeddings contain NaN or inf; drop those cells.")
    hnswlib = _hnswlib()
    if hnswlib is None:
        return ExactCosineIndex(embedding)
    report = progress or (lambda fraction, message: None)
    n = len(embedding)
    index = hnswlib.Index(space="cosine", dim=embedding.shape[1])
    index.init_index(
        max_elements=max(n, 1),
        ef_construction=int(ef_construction),
        M=HNSW_M,
        random_seed=seed,
    )
    index.set_num_threads(threads)
    chunk = max(1, -(-n // 10))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        index.add_items(embedding[start:stop], np.arange(start, stop))
        report(stop / n, f"{stop:,}/{n:,} cells inserted")  # a caller's stop check may raise
    index.set_ef(HNSW_EF_QUERY)
    return index


def load_cell_index(path: str | Path, dim: int, n_cells: int) -> Any:
    """Load a saved hnswlib index (None when hnswlib is unavailable: rebuilt on demand)."""
    hnswlib = _hnswlib()
    if hnswlib is None:
        return None
    index = hnswlib.Index(space="cosine", dim=dim)
    try:
        index.load_index(str(path), max_elements=n_cells)
    except RuntimeError as exc:
        raise ReferenceBundleError(f"The kNN index {Path(path).name} is unreadable: {exc}") from exc
    if index.get_current_count() != n_cells:
        raise ReferenceBundleError(
            f"The kNN index holds {index.get_current_count()} cells but the reference has "
            f"{n_cells}; rebuild the bundle."
        )
    index.set_ef(HNSW_EF_QUERY)
    return index


def knn_query(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Query ``k`` neighbours for finite rows; NaN rows get index -1 and distance NaN."""
    queries = np.asarray(queries, dtype=np.float32)
    n_index = index.get_current_count()
    k = int(min(k, n_index))
    if k < 1:
        raise ParameterError(f"k must be >= 1 and the index non-empty (k={k}, cells={n_index}).")
    indices = np.full((len(queries), k), -1, dtype=np.int64)
    distances = np.full((len(queries), k), np.nan, dtype=np.float32)
    valid = np.isfinite(queries).all(axis=1)
    if valid.any():
        # The index is shared and read-only: ``ef`` was set once when it was built or
        # loaded, and hnswlib searches with max(ef, k) candidates, so nothing is set here.
        found, dist = index.knn_query(queries[valid], k=k)
        indices[valid] = found
        distances[valid] = dist
    return indices, distances


def knn_query_all_threads(
    index: Any, queries: np.ndarray, k: int, *, progress: ProgressCallback | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run :func:`knn_query` on every core, for an index no other thread is using.

    A build's own index (one insertion thread) is searched for many cells at once: the
    queries are independent, so any thread count (and any chunking) finds the same
    neighbours. The index's thread count is restored afterwards.

    Parameters
    ----------
    index
        An index from :func:`build_cell_index` that no other thread searches meanwhile.
    queries, k
        As :func:`knn_query`.
    progress
        ``progress(fraction, message)`` after each of ten chunks of queries (a caller's
        stop check may raise).

    Returns
    -------
    tuple of numpy.ndarray
        :func:`knn_query`'s indices and distances.
    """
    report = progress or (lambda fraction, message: None)
    queries = np.asarray(queries, dtype=np.float32)
    n = len(queries)
    chunk = max(1, -(-n // 10))
    threads = getattr(index, "num_threads", None)
    if threads is not None:  # not the exact fallback
        index.set_num_threads(-1)
    try:
        parts = []
        for start in range(0, max(n, 1), chunk):
            stop = min(start + chunk, n)
            parts.append(knn_query(index, queries[start:stop], k))
            report(stop / max(n, 1), f"{k} nearest cells of {stop:,}/{n:,} cells")
    finally:
        if threads is not None:
            index.set_num_threads(threads)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def drop_self_neighbors(
    indices: np.ndarray, distances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each point's own entry from a self-query of ``k + 1`` neighbours.

    Row ``i`` of ``indices`` lists the neighbours of point ``i`` found by querying the
    points against themselves. Self is usually first, but not when several points share
    one embedding (common for cells with only one or two regions): ties come back in any
    order. So the entry equal to ``i`` is removed wherever it is, and rows where self was
    not returned at all lose their farthest entry instead. Returns ``k`` columns.
    """
    n, width = indices.shape
    if width < 2:
        raise ParameterError("A self-query needs at least 2 neighbours per point.")
    drop = indices == np.arange(n)[:, None]
    first = drop & (np.cumsum(drop, axis=1) == 1)  # one self entry per row at most
    missing = ~first.any(axis=1)
    first[missing, -1] = True
    keep = ~first
    return indices[keep].reshape(n, width - 1), distances[keep].reshape(n, width - 1)


def knn_query_hiding(
    index: Any, queries: np.ndarray, k: int, hidden: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Query ``k`` neighbours among the indexed cells other than ``hidden``.

    The held-out calibration of the label classifier searches the reference's own index
    this way instead of building a second one over the other cells. hnswlib: the hidden
    cells are marked deleted for the query (its search still walks through them but never
    returns them) and unmarked afterwards, also when the query fails, so the index is
    left as it was (the marks are its only change; the graph is untouched). The index must
    not be queried by anyone else meanwhile: call it while the index is private (being
    built). :class:`ExactCosineIndex`: exact search over the other cells.

    Parameters
    ----------
    index
        An index from :func:`build_cell_index` or :func:`load_cell_index`, labelled
        ``0..n-1`` (as those build it).
    queries
        ``(n, dim)`` finite query rows.
    k
        Neighbours per row (at most the number of cells not hidden).
    hidden
        Labels of indexed cells never returned (distinct).

    Returns
    -------
    tuple of numpy.ndarray
        ``(n, k)`` indices (labels of the whole index) and float32 cosine distances.

    Raises
    ------
    ParameterError
        Non-finite queries, or ``k`` outside ``1..cells shown``.
    """
    queries = np.asarray(queries, dtype=np.float32)
    hidden = np.unique(np.asarray(hidden, dtype=np.int64))
    shown = index.get_current_count() - len(hidden)
    if not 1 <= k <= shown:
        raise ParameterError(f"k must be in 1..{shown} (the cells not hidden), got {k}.")
    if not np.isfinite(queries).all():
        raise ParameterError("Queries contain NaN or inf.")
    if isinstance(index, ExactCosineIndex):
        found, distances = index.knn_query_hiding(queries, k, hidden)
        return found.astype(np.int64), distances
    marked = 0
    try:  # no vectorised mark in hnswlib: one call per cell, ~0.3 us each
        for label in hidden.tolist():
            index.mark_deleted(label)
            marked += 1
        found, distances = index.knn_query(queries, k=k)
    finally:
        for label in hidden[:marked].tolist():
            index.unmark_deleted(label)
    return np.asarray(found, dtype=np.int64), np.asarray(distances, dtype=np.float32)
