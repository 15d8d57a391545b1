"""Clustering of cell embeddings: kNN graph + Louvain/Leiden, resolution search, K-means, HC.

The kNN graph is built once per embedding (cosine, exact for small data, hnswlib for
large) as an :class:`igraph.Graph`; changing the resolution re-runs only the community
detection, which takes milliseconds on thousands of cells. igraph's own Louvain
(``community_multilevel``) and Leiden are used: the PyPI ``louvain`` package is unusable
with igraph 1.0 and ``scanpy.tl.louvain`` is deprecated (see KNOWN-ISSUES.md).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from .errors import ParameterError
from .stopping import check_stop

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = [
    "KnnGraph",
    "ResolutionSearch",
    "knn_matrices",
    "graph_from_connectivities",
    "build_knn_graph",
    "louvain",
    "leiden",
    "cluster_graph",
    "find_resolution",
    "kmeans",
    "hierarchical",
    "n_clusters_of",
]

#: Above this many cells the graph is built with hnswlib instead of exact search.
EXACT_KNN_MAX_CELLS = 20_000


@dataclass
class KnnGraph:
    """A weighted kNN graph over the cells that have an embedding.

    Attributes
    ----------
    graph
        Undirected weighted igraph graph over ``valid`` cells.
    valid
        Mask of cells (rows of the embedding) that are vertices; the rest get label -1.
    """

    graph: object
    valid: np.ndarray

    @property
    def n_cells(self) -> int:
        """Number of cells, including those without an embedding."""
        return int(len(self.valid))


def _knn(embedding: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from .knn import build_cell_index, drop_self_neighbors, knn_query

    if len(embedding) <= EXACT_KNN_MAX_CELLS:
        # chunked matrix products with numpy: exact, and no scikit-learn import in the
        # app's projection path (+58 MiB resident, ~1 s on a cold server)
        from .mapfit import exact_cosine_neighbors

        indices, distances = exact_cosine_neighbors(embedding, k + 1, task="The kNN graph")
    else:
        index = build_cell_index(embedding, seed=seed)
        indices, distances = knn_query(index, embedding, k + 1)
    return drop_self_neighbors(indices, distances)


def knn_matrices(
    embedding: np.ndarray, n_neighbors: int = 15, *, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Compute the cosine kNN graph of the cells with an embedding, as two sparse matrices.

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` cell embeddings; rows with NaN are cells without an embedding
        (no edges).
    n_neighbors
        Neighbours per cell (capped at the number of other embedded cells).
    seed
        Seed of the approximate index (hnswlib) used above
        :data:`EXACT_KNN_MAX_CELLS` cells.

    Returns
    -------
    distances
        ``(n_cells, n_cells)`` CSR: each embedded cell's ``n_neighbors`` nearest other
        cells and their cosine distances (directed, as scanpy's ``distances``).
    connectivities
        ``(n_cells, n_cells)`` symmetric CSR: edge weights, cosine similarities clipped to
        ``[1e-6, 1]``, the larger of reciprocal edges.
    """
    import scipy.sparse as sp

    if n_neighbors < 1:
        raise ParameterError(f"n_neighbors must be >= 1, got {n_neighbors}.")
    embedding = np.asarray(embedding, dtype=np.float32)
    n_cells = len(embedding)
    valid = np.isfinite(embedding).all(axis=1)
    where = np.flatnonzero(valid)
    n = len(where)
    if n <= 1:
        empty = sp.csr_matrix((n_cells, n_cells), dtype=np.float64)
        return empty, empty.copy()
    k = min(n_neighbors, n - 1)
    indices, distances = _knn(embedding[valid], k, seed)
    rows = np.repeat(where, k)
    cols = where[indices.ravel()]
    shape = (n_cells, n_cells)
    directed = sp.csr_matrix((distances.ravel().astype(np.float64), (rows, cols)), shape=shape)
    weights = np.clip(1.0 - distances, 1e-6, 1.0).astype(np.float64).ravel()
    adjacency = sp.csr_matrix((weights, (rows, cols)), shape=shape)
    connectivities = adjacency.maximum(adjacency.T).tocsr()
    connectivities.sort_indices()
    return directed, connectivities


def graph_from_connectivities(connectivities: sp.spmatrix, valid: np.ndarray) -> KnnGraph:
    """Build the igraph graph of a stored connectivities matrix, over the ``valid`` cells.

    Parameters
    ----------
    connectivities
        ``(n_cells, n_cells)`` symmetric edge weights (``obsp`` of :func:`scembed_core.tl.neighbors`).
    valid
        Cells that are vertices (those with an embedding); the others get cluster -1.

    Returns
    -------
    KnnGraph
        The undirected weighted graph.
    """
    import igraph as ig
    import scipy.sparse as sp

    valid = np.asarray(valid, dtype=bool)
    matrix = sp.csr_matrix(connectivities)
    if matrix.shape != (len(valid), len(valid)):
        raise ParameterError(
            f"The stored graph is {matrix.shape} but there are {len(valid)} cells; "
            "recompute it (scembed_core.tl.neighbors)."
        )
    n = int(valid.sum())
    adjacency = matrix[valid][:, valid].tocoo()
    upper = adjacency.row < adjacency.col
    edges = np.column_stack([adjacency.row[upper], adjacency.col[upper]])
    graph = ig.Graph(
        n=n, edges=edges.tolist(), edge_attrs={"weight": adjacency.data[upper].tolist()}
    )
    return KnnGraph(graph, valid)


def build_knn_graph(embedding: np.ndarray, n_neighbors: int = 15, *, seed: int = 0) -> KnnGraph:
    """Build the cosine kNN graph of the cells with a finite embedding.

    :func:`knn_matrices` then :func:`graph_from_connectivities` (what
    :func:`scembed_core.tl.neighbors` and :func:`scembed_core.tl.cluster` do through
    ``obsp``).

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` cell embeddings (NaN rows: no embedding).
    n_neighbors
        Neighbours per cell.
    seed
        Seed of the approximate index on large data.

    Returns
    -------
    KnnGraph
        Edge weights are cosine similarities clipped to ``[1e-6, 1]``; undirected, keeping
        the larger weight of reciprocal edges.
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    _, connectivities = knn_matrices(embedding, n_neighbors, seed=seed)
    return graph_from_connectivities(connectivities, np.isfinite(embedding).all(axis=1))


T = TypeVar("T")

#: igraph's random generator is process-wide: hold this lock while a seeded run uses it, so
#: concurrent sessions of the app cannot swap each other's generator mid-run.
_IGRAPH_RNG_LOCK = threading.Lock()


def _with_seed(seed: int, run: Callable[[], T]) -> T:
    import igraph as ig

    with _IGRAPH_RNG_LOCK:
        ig.set_random_number_generator(random.Random(seed))
        try:
            return run()
        finally:
            ig.set_random_number_generator(random)


def _expand(knn: KnnGraph, membership: list[int]) -> np.ndarray:
    labels = np.full(knn.n_cells, -1, dtype=np.int64)
    if len(membership):
        # relabel so cluster 0 is the largest, 1 the next, ... (stable, readable legends)
        codes = np.asarray(membership)
        sizes = np.bincount(codes)
        order = np.argsort(-sizes, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        labels[knn.valid] = rank[codes]
    return labels


def _weights(knn: KnnGraph) -> str | None:
    return "weight" if "weight" in knn.graph.es.attributes() else None


def _check_resolution(resolution: float) -> None:
    """Refuse a negative or non-finite resolution (NaN would put every cell alone)."""
    if not isinstance(resolution, int | float | np.number) or not np.isfinite(resolution):
        raise ParameterError(f"resolution must be a finite number >= 0, got {resolution}.")
    if resolution < 0:
        raise ParameterError(f"resolution must be >= 0, got {resolution}.")


def louvain(knn: KnnGraph, resolution: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """Louvain communities (igraph multilevel) at ``resolution``; -1 for cells without embedding."""
    _check_resolution(resolution)
    if knn.graph.vcount() == 0:
        return _expand(knn, [])
    partition = _with_seed(
        seed,
        lambda: knn.graph.community_multilevel(weights=_weights(knn), resolution=resolution),
    )
    return _expand(knn, partition.membership)


def leiden(knn: KnnGraph, resolution: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """Leiden communities (igraph, modularity objective) at ``resolution``."""
    _check_resolution(resolution)
    if knn.graph.vcount() == 0:
        return _expand(knn, [])
    partition = _with_seed(
        seed,
        lambda: knn.graph.community_leiden(
            objective_function="modularity",
            weights=_weights(knn),
            resolution=resolution,
            n_iterations=-1,
        ),
    )
    return _expand(knn, partition.membership)


def cluster_graph(
    knn: KnnGraph, resolution: float, *, method: str = "louvain", seed: int = 0
) -> np.ndarray:
    """Dispatch to :func:`louvain` or :func:`leiden`."""
    methods = {"louvain": louvain, "leiden": leiden}
    if method not in methods:
        raise ParameterError(f"Unknown clustering method {method!r}; use one of {list(methods)}.")
    return methods[method](knn, resolution, seed=seed)


def n_clusters_of(labels: np.ndarray) -> int:
    """Count the clusters, not counting -1 (no embedding).

    Parameters
    ----------
    labels
        Cluster numbers.

    Returns
    -------
    int
        The number of distinct clusters.
    """
    return int(len(np.unique(labels[labels >= 0])))


@dataclass
class ResolutionSearch:
    """Outcome of a search for the resolution giving a requested number of clusters.

    Attributes
    ----------
    resolution
        The resolution chosen.
    labels
        Cluster labels at that resolution.
    n_clusters
        Clusters found there (equal to ``target`` when ``hit``).
    target
        The requested number of clusters.
    curve
        Every resolution explored and its cluster count (sorted by resolution).
    """

    resolution: float
    labels: np.ndarray
    n_clusters: int
    target: int
    curve: pd.DataFrame

    @property
    def hit(self) -> bool:
        """Whether the requested number of clusters was reached exactly."""
        return self.n_clusters == self.target


def find_resolution(
    knn: KnnGraph,
    n_clusters: int,
    *,
    method: str = "louvain",
    seed: int = 0,
    max_resolution: float = 3.0,
    n_sweep: int = 16,
    n_bisect: int = 12,
) -> ResolutionSearch:
    """Find the resolution that gives ``n_clusters`` clusters (the paper's search).

    Sweeps resolutions from ~0 to ``max_resolution``, then bisects between the two
    sweep points that bracket the target. If the target cannot be reached, the closest
    count is returned and :attr:`ResolutionSearch.hit` is False.
    """
    if n_clusters < 1:
        raise ParameterError(f"n_clusters must be >= 1, got {n_clusters}.")
    explored: dict[float, np.ndarray] = {}

    def run(resolution: float) -> int:
        check_stop("The resolution search")
        resolution = round(float(resolution), 6)
        if resolution not in explored:
            explored[resolution] = cluster_graph(knn, resolution, method=method, seed=seed)
        return n_clusters_of(explored[resolution])

    grid = np.linspace(0.01, max_resolution, n_sweep)
    counts = [run(r) for r in grid]
    brackets = [
        (low, high)
        for low, high, c_low, c_high in zip(
            grid[:-1], grid[1:], counts[:-1], counts[1:], strict=True
        )
        if c_low < n_clusters < c_high
    ]
    if n_clusters not in counts and brackets:
        low, high = brackets[0]
        for _ in range(n_bisect):
            middle = (low + high) / 2
            found = run(middle)
            if found == n_clusters:
                break
            low, high = (middle, high) if found < n_clusters else (low, middle)
    curve = pd.DataFrame(
        {"resolution": list(explored), "n_clusters": [n_clusters_of(v) for v in explored.values()]}
    ).sort_values("resolution", ignore_index=True)
    distance = (curve["n_clusters"] - n_clusters).abs()
    best = curve.loc[distance == distance.min(), "resolution"]
    resolution = float(best.iloc[len(best) // 2]) if len(best) else 1.0
    labels = explored[round(resolution, 6)]
    return ResolutionSearch(resolution, labels, n_clusters_of(labels), n_clusters, curve)


def _finite_rows(embedding: np.ndarray, k: int) -> np.ndarray:
    embedding = np.asarray(embedding, dtype=np.float32)
    valid = np.isfinite(embedding).all(axis=1)
    if k < 1 or k > int(valid.sum()):
        raise ParameterError(
            f"k must be between 1 and the number of embedded cells ({int(valid.sum())}); got {k}."
        )
    return valid


def kmeans(embedding: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """K-means (scikit-learn) with ``k`` clusters; -1 for cells without embedding."""
    from sklearn.cluster import KMeans

    valid = _finite_rows(embedding, k)
    labels = np.full(len(embedding), -1, dtype=np.int64)
    labels[valid] = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(embedding[valid])
    return labels


def hierarchical(embedding: np.ndarray, k: int, *, linkage: str = "ward") -> np.ndarray:
    """Agglomerative (hierarchical) clustering with ``k`` clusters; -1 for cells without embedding."""
    from sklearn.cluster import AgglomerativeClustering

    valid = _finite_rows(embedding, k)
    labels = np.full(len(embedding), -1, dtype=np.int64)
    labels[valid] = AgglomerativeClustering(n_clusters=k, linkage=linkage).fit_predict(
        embedding[valid]
    )
    return labels
