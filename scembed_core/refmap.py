"""The reference map's fit, the engine's own: umap-learn 0.5's recipe without umap-learn.

umap-learn costs every fresh process about 20 s of CPU before a map's first epoch (its
import compiles pynndescent's distance kernels, then its fit compiles its graph and layout
kernels; none of it is cached on disk). This module runs the same steps on kernels numba
keeps in its on-disk cache (:mod:`scembed_core._mapfit_kernels`, filled at install by
``python -m scembed_core.warm``), each step reported:

1. the cosine nearest neighbours of every cell, itself first: exact, chunk by chunk
   (:func:`scembed_core.mapfit.exact_cosine_neighbors`) up to
   :data:`~scembed_core.mapfit.EXACT_MAX_CELLS` cells, hnswlib's index above (in a
   reference build, the reference's own index: one index per build);
2. the fuzzy graph, as umap's ``fuzzy_simplicial_set``: ``smooth_knn_dist`` and the
   membership strengths (the kernels of :mod:`scembed_core._evmap_kernels`), then the fuzzy
   union ``A + A.T - A * A.T``;
3. umap's ``simplicial_set_embedding``: edges weaker than ``max / n_epochs`` dropped, the
   spectral start (eigenvectors of the normalised Laplacian with scipy's ``eigsh``; a graph
   of several components is laid out as umap's ``multi_component_layout`` does: components
   placed apart, each by its own spectral layout; umap's random start when ``eigsh``
   fails), noise and scaling to 10, then the layout epochs (``move_other=True``, serial:
   one seed, one map), ``n_epochs`` by :func:`layout_epochs` (500 up to 10,000 cells and
   200 above; 100 or 150 above lost trustworthiness on 100,000 cells, see BENCHMARKS.md),
   one kernel call per epoch with :func:`~scembed_core.stopping.check_stop` between epochs.

Random numbers are drawn in umap-learn's order from ``numpy.random.RandomState(seed)``, so
the same neighbours and seed give umap-learn's map bit for bit on a connected graph of up
to :data:`LARGEST_ABOVE` cells (``benchmarks/mapfit_own.py``: the built-in reference's
8,785 cells). Above it the spectral start finds the same eigenvectors another way (faster;
equal to the solver's tolerance, so the map differs from umap-learn's in its rounding, not
its recipe). One more deliberate difference, for a graph of more than ``2 * dim``
components: umap-learn measures the gaps between component centres with scikit-learn's
``euclidean_distances``, whose rounding can give a centre a distance of ~1e-8 to itself;
that distance then sets the component's radius and squeezes it to a point. Here a centre's
distance to itself is 0.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._types import ProgressCallback
from .errors import ParameterError
from .evmap import MapParams, epochs_per_sample, find_ab_params
from .mapfit import EXACT_MAX_CELLS, LAYOUT_SHARE, exact_cosine_neighbors
from .stopping import check_stop

__all__ = [
    "fit_reference_map",
    "fuzzy_graph",
    "spectral_start",
    "hnsw_cosine_neighbors",
    "layout_epochs",
]

#: umap-learn's defaults, the fit's recipe.
MIN_DIST, SPREAD = 0.1, 1.0
LOCAL_CONNECTIVITY, NEGATIVE_SAMPLE_RATE, REPULSION, LEARNING_RATE = 1.0, 5, 1.0, 1.0
#: Where each step starts, as a share of the map stage (the layout takes the rest).
_GRAPH_AT, _SPECTRAL_AT = 0.3, 0.33
#: Cosine distance at which umap-learn cuts an edge (``DISCONNECTION_DISTANCES``).
_DISCONNECTION = 2.0
#: Above this many cells (in a component) the spectral start solves for the largest
#: eigenvalues of ``I - L`` instead of umap's smallest of ``L``: the same eigenvectors (|r| >
#: 0.9997), found in 5.3 s where ``which="SM"`` took 47 s for 100,000 cells (at load 4).
LARGEST_ABOVE = 10_000
#: hnswlib's ``ef_construction`` for the map's neighbours above ``EXACT_MAX_CELLS`` (the
#: served index uses 200): on 100,000 cells, 7.7 s to build on one thread instead of 19.1 s,
#: recall of the exact 15 nearest 0.9996 instead of 1.0 (2,000 cells checked, load 4-6).
#: Only for a map fitted alone: a reference build passes its own index (200), built anyway.
MAP_EF_CONSTRUCTION = 100
#: Fewest seconds between two layout-epoch reports.
_REPORT_EVERY = 0.25


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
    thread: one seed, one graph), with ``ef_construction``
    :data:`MAP_EF_CONSTRUCTION`, unless the caller passes one over the same rows (the
    reference's own index: built once for the map and the label transfer); it is queried in
    chunks, each reported.

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
    from .knn import HNSW_EF_QUERY, build_cell_index

    report = progress or (lambda fraction, message: None)
    data = np.ascontiguousarray(data, dtype=np.float32)
    n = data.shape[0]
    query_from = 0.0
    if index is None:
        query_from = 0.7
        index = build_cell_index(
            data,
            seed=seed,
            ef_construction=MAP_EF_CONSTRUCTION,
            progress=lambda f, m: _step(report, query_from * f, f"kNN index: {m}"),
        )
        if hasattr(index, "set_ef"):  # not the exact fallback (no hnswlib)
            index.set_ef(max(2 * k, HNSW_EF_QUERY))
    elif index.get_current_count() != n:
        raise ParameterError(f"The index holds {index.get_current_count():,} cells, not {n:,}.")
    threads = getattr(index, "num_threads", None)
    if threads is not None:  # queries are independent: any thread count gives one result
        index.set_num_threads(-1)
    chunk = max(1, -(-n // 10))
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    try:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            labels, dists = index.knn_query(data[start:stop], k=k)
            indices[start:stop], distances[start:stop] = labels, dists
            report(
                query_from + (1 - query_from) * stop / n,
                f"nearest neighbours of {stop:,}/{n:,} cells",
            )
            check_stop("The map fit")
    finally:
        if threads is not None:
            index.set_num_threads(threads)
    # the row itself first, at distance 0 (absent from its own result: it replaces the last)
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


def fuzzy_graph(indices: np.ndarray, distances: np.ndarray) -> sp.coo_matrix:
    """Build umap's ``fuzzy_simplicial_set`` from a kNN table (each row itself first).

    Parameters
    ----------
    indices, distances
        ``(n, k)`` neighbour indices (-1: none) and cosine distances, nearest first.

    Returns
    -------
    scipy.sparse.coo_matrix
        The symmetric ``(n, n)`` float32 membership graph (fuzzy union).
    """
    from ._evmap_kernels import memberships, smooth_knn

    indices = np.array(indices, dtype=np.int32)
    distances = np.array(distances, dtype=np.float32)
    cut = distances >= _DISCONNECTION  # umap-learn's disconnection distance for cosine
    indices[cut] = -1
    distances[cut] = np.inf
    n, k = indices.shape
    mean = np.full(n, float(np.mean(distances)))
    sigma, rho = smooth_knn(np.ascontiguousarray(distances), float(k), LOCAL_CONNECTIVITY, mean)
    weights = memberships(indices, distances, sigma, rho)
    weights[indices == np.arange(n)[:, None]] = 0.0  # a cell is not its own neighbour
    keep = indices >= 0
    rows = np.broadcast_to(np.arange(n, dtype=np.int32)[:, None], indices.shape)[keep]
    graph = sp.coo_matrix((weights[keep], (rows, indices[keep])), shape=(n, n))
    graph.eliminate_zeros()
    transpose = graph.transpose()
    union = graph + transpose - graph.multiply(transpose)
    union = sp.coo_matrix(union)
    union.eliminate_zeros()
    return union


def _spectral(graph: sp.spmatrix, dim: int, random_state: np.random.RandomState) -> np.ndarray:
    """Lay out a connected graph as umap's ``_spectral_layout`` (random start if eigsh fails)."""
    import warnings

    from scipy.sparse.linalg import ArpackError, eigsh

    n = graph.shape[0]
    sqrt_deg = np.sqrt(np.asarray(graph.sum(axis=0)).squeeze())
    identity = sp.identity(n, dtype=np.float64)
    scale = sp.spdiags(1.0 / sqrt_deg, 0, n, n)
    laplacian = identity - scale * graph * scale
    k = dim + 1
    ncv = max(2 * k + 1, int(np.sqrt(n)))
    # umap draws a start for lobpcg here even when it solves with eigsh: drawn too, so the
    # random stream after it (noise, layout seeds) is umap-learn's
    random_state.normal(size=(n, k))
    try:
        if n <= LARGEST_ABOVE:  # umap's solve
            values, vectors = eigsh(
                laplacian, k, which="SM", ncv=ncv, tol=1e-4, v0=np.ones(n), maxiter=n * 5
            )
        else:  # the same eigenvectors, as the largest of I - L: ARPACK converges far faster
            values, vectors = eigsh(
                identity - laplacian, k, which="LA", ncv=64, tol=1e-4, v0=np.ones(n), maxiter=n * 5
            )
            values = 1.0 - values
        return vectors[:, np.argsort(values)[1:k]]
    except ArpackError:
        warnings.warn(
            "Spectral initialisation failed (too small an eigengap); random start.",
            stacklevel=3,
        )
        return random_state.uniform(low=-10.0, high=10.0, size=(n, dim))


def _component_centres(
    data: np.ndarray,
    labels: np.ndarray,
    n_parts: int,
    dim: int,
    random_state: np.random.RandomState,
) -> np.ndarray:
    """Place components as umap's ``component_layout``: centroids, spectrally (cosine)."""
    from sklearn.manifold import SpectralEmbedding
    from sklearn.metrics import pairwise_distances

    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_parts + 1))
    centroids = np.empty((n_parts, data.shape[1]), dtype=np.float64)
    for label in range(n_parts):  # umap's means (its float32 sums), one per component
        centroids[label] = data[order[bounds[label] : bounds[label + 1]]].mean(axis=0)
    affinity = np.exp(-(pairwise_distances(centroids, metric="cosine") ** 2))
    layout = SpectralEmbedding(
        n_components=dim, affinity="precomputed", random_state=random_state
    ).fit_transform(affinity)
    return layout / layout.max()


def spectral_start(
    data: np.ndarray, graph: sp.spmatrix, random_state: np.random.RandomState, dim: int = 2
) -> np.ndarray:
    """Compute umap's spectral start (``multi_component_layout`` for several components).

    Parameters
    ----------
    data
        ``(n, d)`` cells in the analysis space (component centroids, when there are more
        than ``2 * dim`` components).
    graph
        The ``(n, n)`` fuzzy graph after the edge pruning.
    random_state
        The fit's generator (umap's draws, in umap's order).
    dim
        Dimensions of the map.

    Returns
    -------
    numpy.ndarray
        ``(n, dim)`` starting coordinates, before umap's noise and scaling.
    """
    from scipy.sparse.csgraph import connected_components

    n_parts, labels = connected_components(graph)
    if n_parts == 1:
        return _spectral(graph, dim, random_state)
    result = np.empty((graph.shape[0], dim), dtype=np.float32)
    if n_parts > 2 * dim:
        centres = _component_centres(data, labels, n_parts, dim, random_state)
    else:
        half = int(np.ceil(n_parts / 2.0))
        base = np.hstack([np.eye(half), np.zeros((half, dim - half))])
        centres = np.vstack([base, -base])[:n_parts]
    # cells grouped by component once (umap masks the whole graph per component: n x parts)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_parts + 1))
    blocks = graph.tocsr()[order][:, order]
    for label in range(n_parts):  # a loop over components, each one vectorised
        first, last = bounds[label], bounds[label + 1]
        members = order[first:last]  # ascending: umap's ``labels == label`` rows
        part = blocks[first:last, first:last].tocoo()
        gaps = np.linalg.norm(centres - centres[label], axis=1)
        reach = gaps[gaps > 0.0].min() / 2.0
        size = part.shape[0]
        if size < 2 * dim or size <= dim + 1:
            result[members] = (
                random_state.uniform(low=-reach, high=reach, size=(size, dim)) + centres[label]
            )
        else:
            layout = _spectral(part, dim, random_state)
            result[members] = layout * (reach / np.max(np.abs(layout))) + centres[label]
    return result


def layout_epochs(n_cells: int) -> int:
    """Layout epochs of a map of ``n_cells`` cells: umap-learn's rule.

    Parameters
    ----------
    n_cells
        Cells in the reference.

    Returns
    -------
    int
        500 up to 10,000 cells, 200 above (umap-learn's ``n_epochs=None``).
    """
    return 500 if n_cells <= 10_000 else 200


def fit_reference_map(
    space: np.ndarray,
    *,
    seed: int = 42,
    n_neighbors: int = 15,
    n_epochs: int | None = None,
    index: Any = None,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, MapParams]:
    """Fit the 2-D map of reference cells: umap-learn's recipe, the engine's kernels.

    Parameters
    ----------
    space
        ``(n_cells, dim)`` finite reference cells in the analysis space (``n_cells >
        n_neighbors``).
    seed
        Seed of every random draw (umap-learn's ``random_state``).
    n_neighbors
        Neighbours of the fuzzy graph, the cell itself included (umap's convention).
    n_epochs
        Layout epochs (None: :func:`layout_epochs` of the number of cells).
    index
        The reference's cosine index over exactly ``space``'s rows
        (:func:`scembed_core.knn.build_cell_index`): above
        :data:`~scembed_core.mapfit.EXACT_MAX_CELLS` cells the neighbours are searched in
        it instead of an index built for the map alone (one index per build). Unused at or
        below that size (exact neighbours).
    progress
        ``progress(fraction, message)``: after every chunk of the neighbour search, at the
        graph and the spectral start, then after layout epochs (at most four times a
        second, and the last one).

    Returns
    -------
    tuple
        ``(coords, params)``: ``(n_cells, 2)`` float32 map coordinates and the
        :class:`~scembed_core.evmap.MapParams` new cells are placed with.

    Raises
    ------
    Cancelled
        The caller asked to stop (checked between chunks and between epochs).
    ParameterError
        ``n_epochs`` is below 1.
    """
    from ._mapfit_kernels import layout_epoch

    if n_epochs is not None and int(n_epochs) < 1:
        raise ParameterError(f"n_epochs must be at least 1, got {n_epochs}.")
    report = progress or (lambda fraction, message: None)
    check_stop("The map fit")
    space = np.asarray(space, dtype=np.float32)
    n = int(space.shape[0])
    span = _GRAPH_AT
    step = lambda f, m: report(span * f, m)  # noqa: E731
    if n <= EXACT_MAX_CELLS:
        indices, distances = exact_cosine_neighbors(space, n_neighbors, progress=step)
    else:
        indices, distances = hnsw_cosine_neighbors(
            space, n_neighbors, seed=seed, progress=step, index=index
        )
    report(_GRAPH_AT, "fuzzy graph")
    graph = fuzzy_graph(indices, distances)
    check_stop("The map fit")
    random_state = np.random.RandomState(seed)
    a, b = find_ab_params(SPREAD, MIN_DIST)
    n_epochs = layout_epochs(n) if n_epochs is None else int(n_epochs)
    graph.sum_duplicates()
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    report(_SPECTRAL_AT, "spectral start")
    start = spectral_start(space, graph, random_state)
    start = (start * (10.0 / np.abs(start).max())).astype(np.float32)
    start = start + random_state.normal(scale=0.0001, size=start.shape).astype(np.float32)
    per_sample = epochs_per_sample(graph.data, n_epochs)
    head, tail = graph.row, graph.col
    rng_state = random_state.randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3)
    low, high = np.min(start, 0), np.max(start, 0)
    embedding = (10.0 * (start - low) / (high - low)).astype(np.float32, order="C")
    # umap: one generator state per vertex, seeded by the fit's draw and its start position
    states = np.full((n, 3), rng_state.astype(np.int64), dtype=np.int64) + embedding[:, 0].astype(
        np.float64
    ).view(np.int64).reshape(-1, 1)
    per_negative = per_sample / NEGATIVE_SAMPLE_RATE
    next_negative = per_negative.copy()
    next_sample = per_sample.copy()
    alpha = LEARNING_RATE
    last = 0.0
    for epoch in range(n_epochs):
        check_stop("The map fit")
        layout_epoch(
            embedding, head, tail, n, per_sample, a, b, states, REPULSION, alpha,
            per_negative, next_negative, next_sample, epoch,
        )  # fmt: skip
        alpha = LEARNING_RATE * (1.0 - (float(epoch) / float(n_epochs)))
        now = time.perf_counter()
        if now - last >= _REPORT_EVERY or epoch == n_epochs - 1:
            last = now
            done = epoch + 1
            report(
                1 - LAYOUT_SHARE + LAYOUT_SHARE * done / n_epochs, f"layout epoch {done}/{n_epochs}"
            )
    check_stop("The map fit")
    params = MapParams(
        a=float(a),
        b=float(b),
        n_neighbors=int(n_neighbors),
        metric="cosine",
        local_connectivity=LOCAL_CONNECTIVITY,
        negative_sample_rate=float(NEGATIVE_SAMPLE_RATE),
        repulsion_strength=REPULSION,
        learning_rate=LEARNING_RATE,
        n_epochs=None,
        transform_seed=42,
        fit={
            "engine": "scembed",
            "min_dist": MIN_DIST,
            "spread": SPREAD,
            "metric": "cosine",
            "random_state": int(seed),
        },
    )
    return embedding, params
