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

Above :data:`~scembed_core.mapfit.EXACT_MAX_CELLS` cells the neighbours are those of the
reference's own index (:func:`scembed_core.knn.build_cell_index`), from the build's one
search of every cell in it (``neighbors=``) or searched here. A landmark map
(:mod:`scembed_core.landmarks`: the steps above on a seeded sample of landmark cells, the
other cells placed on it by EV-projection, then a shorter layout of all cells) is available
with ``landmark_above``; it is off by default, as it lost demo neighbourhood preservation on
100,000 cells (BENCHMARKS.md, ``mapfit_own``): every reference gets the map of all its
cells.

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
from .landmarks import N_LANDMARKS, fit_landmark_map
from .mapfit import EXACT_MAX_CELLS, LAYOUT_SHARE, exact_cosine_neighbors
from .mapneighbors import hnsw_cosine_neighbors, self_first
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
#: Fewest seconds between two layout-epoch reports.
_REPORT_EVERY = 0.25


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
    from ._kernels import LAUNCH_LOCK

    indices = np.array(indices, dtype=np.int32)
    distances = np.array(distances, dtype=np.float32)
    cut = distances >= _DISCONNECTION  # umap-learn's disconnection distance for cosine
    indices[cut] = -1
    distances[cut] = np.inf
    n, k = indices.shape
    mean = np.full(n, float(np.mean(distances)))
    with LAUNCH_LOCK:  # parallel kernels: one launch at a time (see LAUNCH_LOCK)
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
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
    landmark_above: int | None = None,
    n_landmarks: int = N_LANDMARKS,
) -> tuple[np.ndarray, MapParams]:
    """Fit the 2-D map of reference cells: umap-learn's recipe, the engine's kernels.

    Above ``landmark_above`` cells (opt-in; default: never) it is a landmark map
    (:func:`scembed_core.landmarks.fit_landmark_map`): the same fit on ``n_landmarks``
    cells drawn uniformly with ``seed``, every other cell placed on it by
    :func:`scembed_core.evmap.transform` from its ``n_neighbors`` nearest landmarks (the
    EV-projection rule of query cells), then a shorter layout of all cells from there,
    each step reported (``"landmark map"``, ``"index of landmarks"``, ``"placing
    cells"``, ``"all cells"``). The returned parameters place query cells against all
    cells' coordinates either way.

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
    neighbors
        A self-query of that index already made (:func:`scembed_core.knn.knn_query` of
        every row of ``space``, at least ``n_neighbors`` columns, nearest first): above
        :data:`~scembed_core.mapfit.EXACT_MAX_CELLS` cells its first ``n_neighbors``
        columns are the map's neighbours (no search here). A build queries its index once
        for the map and the mapping distances.
    progress
        ``progress(fraction, message)``: after every chunk of the neighbour search, at the
        graph and the spectral start, then after layout epochs (at most four times a
        second, and the last one).
    landmark_above
        Above this many cells, a landmark map (None: never, the default; see
        :mod:`scembed_core.landmarks` for its measured quality).
    n_landmarks
        Landmarks of a landmark map (default :data:`~scembed_core.landmarks.N_LANDMARKS`;
        a map of all cells when it is not below the cell count).

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
    if n_epochs is not None and int(n_epochs) < 1:
        raise ParameterError(f"n_epochs must be at least 1, got {n_epochs}.")
    report = progress or (lambda fraction, message: None)
    check_stop("The map fit")
    space = np.asarray(space, dtype=np.float32)
    n = int(space.shape[0])
    whole = dict(seed=seed, n_neighbors=n_neighbors, index=index, neighbors=neighbors)
    if landmark_above is not None and n > landmark_above and n_neighbors < n_landmarks < n:
        return fit_landmark_map(
            space,
            lambda cells, progress: _fit(
                cells, seed=seed, n_neighbors=n_neighbors, n_epochs=n_epochs, progress=progress
            ),
            lambda start, epochs, alpha, progress: _fit(
                space, **whole, n_epochs=epochs, start=start, alpha=alpha, progress=progress
            )[0],
            n_landmarks=int(n_landmarks),
            seed=seed,
            n_neighbors=n_neighbors,
            progress=progress,
        )
    return _fit(space, **whole, n_epochs=n_epochs, progress=report)


def _fit(
    space: np.ndarray,
    *,
    seed: int,
    n_neighbors: int,
    n_epochs: int | None,
    progress: ProgressCallback,
    index: Any = None,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
    start: np.ndarray | None = None,
    alpha: float = LEARNING_RATE,
) -> tuple[np.ndarray, MapParams]:
    """Fit the map of all of ``space``'s rows.

    ``start``: from these coordinates (no spectral start); ``alpha``: the first epoch's
    learning rate, decaying linearly as umap's.
    """
    from ._mapfit_kernels import layout_epoch

    report = progress
    n = int(space.shape[0])
    span = _GRAPH_AT
    step = lambda f, m: report(span * f, m)  # noqa: E731
    if n <= EXACT_MAX_CELLS:
        indices, distances = exact_cosine_neighbors(space, n_neighbors, progress=step)
    elif neighbors is not None:
        if len(neighbors[0]) != n or neighbors[0].shape[1] < n_neighbors:
            raise ParameterError(f"The neighbour table does not hold {n:,} x {n_neighbors}.")
        step(1.0, f"nearest neighbours of {n:,}/{n:,} cells (the build's)")
        indices, distances = self_first(
            neighbors[0][:, :n_neighbors], neighbors[1][:, :n_neighbors]
        )
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
    if start is None:
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
    first_alpha = alpha
    last = 0.0
    for epoch in range(n_epochs):
        check_stop("The map fit")
        layout_epoch(
            embedding, head, tail, n, per_sample, a, b, states, REPULSION, alpha,
            per_negative, next_negative, next_sample, epoch,
        )  # fmt: skip
        alpha = first_alpha * (1.0 - (float(epoch) / float(n_epochs)))
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
