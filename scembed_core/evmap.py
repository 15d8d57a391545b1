"""EV-projection from arrays: umap-learn's ``UMAP.transform`` without umap-learn or pickles.

A reference map is the reference cells' 2-D coordinates (``cells.h5ad`` obsm ``X_umap``)
plus a few numbers (:class:`MapParams`, ``map.json`` in the bundle): the curve parameters
``a`` and ``b`` of the fitted map and umap-learn's transform settings. Placing new cells
follows umap-learn 0.5's ``UMAP.transform`` step by step:

1. the ``n_neighbors`` nearest reference cells of each query cell (the cosine kNN search
   the projection runs anyway); neighbours at or beyond the disconnection distance (2 for
   cosine) are dropped;
2. fuzzy membership weights ``exp(-(d - rho) / sigma)`` with ``sigma`` from umap's
   ``smooth_knn_dist`` (binary search to ``log2(k)``, ``local_connectivity - 1``, so
   ``rho = 0``), as ``compute_membership_strengths(bipartite=True)``;
3. the initial position: the weighted mean of the neighbours' map coordinates
   (``init_graph_transform``, including its shortcut for a weight of exactly 1);
4. edges lighter than ``max / n_epochs`` dropped, ``epochs_per_sample = max / w``, then
   umap's attractive/repulsive SGD (``optimize_layout_euclidean`` with ``move_other=False``,
   learning rate ``learning_rate / 4`` decaying linearly, ``negative_sample_rate`` negative
   samples per positive among all reference points, gradients clipped to +-4) for
   100 epochs when at most 10,000 cells are placed at once, 30 otherwise.

The random numbers are umap's own: a ``RandomState(seed)`` draws the 3-word Tausworthe
state, offset per cell by the bits of its initial x coordinate, so a given seed gives the
same map. Query cells never interact (the reference points are fixed), so the compiled
kernel runs cells in parallel, each through all its epochs, which is equivalent to umap's
epoch-major loop and much kinder to the cache. The kernels (``_evmap_kernels``, numba with
an on-disk cache) are imported on first use, so reading a bundle's map needs no numba.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from .errors import ParameterError, ReferenceBundleError

if TYPE_CHECKING:
    import umap

__all__ = ["MapParams", "MapTransform", "transform", "find_ab_params", "epochs_per_sample", "warm"]

#: umap-learn's constants (umap_.py)
_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3
_INT32_MIN = np.iinfo(np.int32).min + 1
_INT32_MAX = np.iinfo(np.int32).max - 1
#: Distances at or beyond which umap treats two points as disconnected (cosine: 2).
_DISCONNECTION = {"cosine": 2.0}


#: Upper bounds of map.json values: far above any fitted map (umap's a, b for min_dist in
#: [0, 1] and spread in [0.5, 5] stay below 50 and 2; its defaults are 1, 5, 1, 1), low
#: enough that no value makes the projection endless or its coordinates infinite.
MAP_LIMITS = {
    "a": 1e3,
    "b": 10.0,
    "local_connectivity": 100.0,
    "negative_sample_rate": 100.0,
    "repulsion_strength": 100.0,
    "learning_rate": 100.0,
}
MAX_MAP_EPOCHS = 10_000
MAX_MAP_NEIGHBORS = 1_000


@dataclass(frozen=True)
class MapParams:
    """What umap-learn's transform needs besides the reference coordinates.

    Attributes
    ----------
    a, b
        Parameters of the low-dimensional similarity curve ``1 / (1 + a d^(2b))`` of the
        fitted map (umap's ``_a``, ``_b``; from ``min_dist`` and ``spread``).
    n_neighbors
        Reference neighbours per query cell.
    metric
        Metric of the neighbour search in the analysis space (``"cosine"``).
    local_connectivity, negative_sample_rate, repulsion_strength, learning_rate
        umap-learn's hyperparameters of the fit (its defaults: 1, 5, 1, 1).
    n_epochs
        ``n_epochs`` of the fitted model; None (umap's default) lets the transform use 100
        epochs for up to 10,000 cells and 30 above, otherwise ``n_epochs // 3``.
    transform_seed
        umap's ``transform_seed`` (42): the default seed of :func:`transform`.
    fit
        Provenance of the fit (umap-learn version, min_dist, spread, the fit's metric).
    """

    a: float
    b: float
    n_neighbors: int = 15
    metric: str = "cosine"
    local_connectivity: float = 1.0
    negative_sample_rate: float = 5.0
    repulsion_strength: float = 1.0
    learning_rate: float = 1.0
    n_epochs: int | None = None
    transform_seed: int = 42
    fit: Mapping = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.fit, Mapping):
            raise ReferenceBundleError("map.json: fit must be an object.")
        object.__setattr__(self, "fit", MappingProxyType(dict(self.fit)))  # read-only
        for name, upper in MAP_LIMITS.items():
            value = getattr(self, name)
            low_ok = value >= 0 if name == "repulsion_strength" else value > 0
            if not isinstance(value, int | float) or not math.isfinite(value) or not low_ok:
                raise ReferenceBundleError(
                    f"map.json: {name} must be a positive number, got {str(value)[:40]}."
                )
            if value > upper:
                raise ReferenceBundleError(
                    f"map.json: {name} is {value:.3g}, above {upper:g}; no fitted UMAP map uses "
                    "such a value (it would place cells off the map)."
                )
        if (
            isinstance(self.n_neighbors, bool)
            or not isinstance(self.n_neighbors, int)
            or not (2 <= self.n_neighbors <= MAX_MAP_NEIGHBORS)
        ):
            raise ReferenceBundleError(
                f"map.json: n_neighbors must be an integer from 2 to {MAX_MAP_NEIGHBORS}, got "
                f"{str(self.n_neighbors)[:40]}."
            )
        if self.n_epochs is not None and (
            not isinstance(self.n_epochs, int) or not 3 <= self.n_epochs <= MAX_MAP_EPOCHS
        ):
            raise ReferenceBundleError(
                f"map.json: n_epochs must be None or an integer from 3 to {MAX_MAP_EPOCHS:,}, "
                f"got {str(self.n_epochs)[:40]}."
            )
        if isinstance(self.transform_seed, bool) or not isinstance(self.transform_seed, int):
            raise ReferenceBundleError("map.json: transform_seed must be an integer.")
        if self.metric not in _DISCONNECTION:
            raise ReferenceBundleError(
                f"map.json: metric {self.metric!r} is not supported; expected one of "
                f"{sorted(_DISCONNECTION)}."
            )
        if self.n_epochs is not None and (not isinstance(self.n_epochs, int) or self.n_epochs < 3):
            raise ReferenceBundleError(
                f"map.json: n_epochs must be None or >= 3, got {self.n_epochs!r}."
            )

    def __reduce__(self) -> tuple[object, tuple[dict]]:
        """Rebuilt from plain data when copied to another process (e.g. a Dask worker)."""
        return (MapParams.from_dict, (self.to_dict(),))

    def transform_epochs(self, n_cells: int) -> int:
        """Epochs umap-learn's transform runs for a batch of ``n_cells`` cells."""
        if self.n_epochs is None:
            return 100 if n_cells <= 10_000 else 30
        return int(self.n_epochs // 3.0)

    def to_dict(self) -> dict:
        """Plain JSON data (``map.json``)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["fit"] = dict(self.fit)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MapParams:
        """Validate and read ``map.json`` data (raises :class:`ReferenceBundleError`)."""
        if not isinstance(data, dict):
            raise ReferenceBundleError("map.json must hold a JSON object.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ReferenceBundleError(f"map.json has unknown field(s) {unknown}.")
        if "a" not in data or "b" not in data:
            raise ReferenceBundleError("map.json must give the curve parameters a and b.")
        values = dict(data)
        if not isinstance(values.get("fit", {}), dict):
            raise ReferenceBundleError("map.json: fit must be an object.")
        return cls(**values)

    @classmethod
    def from_umap(cls, model: umap.UMAP) -> MapParams:
        """Return the parameters of a fitted ``umap.UMAP`` (only where a map is fitted)."""
        import umap

        metric = model.metric if isinstance(model.metric, str) else "custom"
        return cls(
            a=float(model._a),
            b=float(model._b),
            n_neighbors=int(model.n_neighbors),
            metric="cosine",
            local_connectivity=float(model.local_connectivity),
            negative_sample_rate=float(model.negative_sample_rate),
            repulsion_strength=float(model.repulsion_strength),
            learning_rate=float(model._initial_alpha),
            n_epochs=None if model.n_epochs is None else int(model.n_epochs),
            transform_seed=int(model.transform_seed),
            fit={
                "umap_learn": umap.__version__,
                "min_dist": float(model.min_dist),
                "spread": float(model.spread),
                "metric": metric,
                "random_state": model.random_state
                if isinstance(model.random_state, int | None)
                else "object",
            },
        )


def find_ab_params(spread: float = 1.0, min_dist: float = 0.1) -> tuple[float, float]:
    """Port umap-learn's ``find_ab_params``: fit ``1 / (1 + a x^(2b))`` to the offset decay."""
    from scipy.optimize import curve_fit

    def curve(x: np.ndarray, a: float, b: float) -> np.ndarray:
        return 1.0 / (1.0 + a * x ** (2 * b))

    xv = np.linspace(0, spread * 3, 300)
    yv = np.zeros(xv.shape)
    yv[xv < min_dist] = 1.0
    yv[xv >= min_dist] = np.exp(-(xv[xv >= min_dist] - min_dist) / spread)
    params, _ = curve_fit(curve, xv, yv)
    return float(params[0]), float(params[1])


@dataclass
class MapTransform:
    """Positions of query cells on a reference map, and how they got there.

    Attributes
    ----------
    coords
        ``(n_cells, 2)`` float32 final positions; NaN for cells without neighbours.
    initial
        ``(n_cells, 2)`` float32 starting positions (weighted mean of the neighbours).
    n_epochs
        Optimisation epochs run.
    frames
        ``(n_frames, n_sampled, 2)`` positions of the sampled cells: the start, then after
        the recorded epochs (the last frame equals their final positions); None unless asked.
    frame_epochs
        Epoch count behind each frame (0 = start).
    sample
        Row indices of the sampled cells in ``frames``.
    """

    coords: np.ndarray
    initial: np.ndarray
    n_epochs: int
    frames: np.ndarray | None = None
    frame_epochs: np.ndarray | None = None
    sample: np.ndarray | None = None


def _membership(
    indices: np.ndarray, distances: np.ndarray, params: MapParams, n_ref: int, per_cell: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour columns (-1: none) and umap's fuzzy membership weights, per query cell.

    umap floors ``sigma`` with the batch's mean distance; ``per_cell`` uses each cell's own
    mean distance instead, so a cell's weights never depend on the other cells.
    """
    cols = np.asarray(indices, dtype=np.int64).copy()
    dists = np.asarray(distances, dtype=np.float32)
    finite = np.isfinite(dists)
    cols[~finite] = -1
    dists = np.where(finite, dists, np.float32(0.0)).astype(np.float32)
    if cols.size and (cols.max() >= n_ref):
        raise ParameterError(
            f"Neighbour index {int(cols.max())} is out of range for a map of {n_ref} reference "
            "cells: the neighbours come from another reference."
        )
    cols[dists >= _DISCONNECTION[params.metric]] = -1
    used = finite.any(axis=1)
    if per_cell:
        counts = finite.sum(axis=1)
        mean = np.divide(
            dists.sum(axis=1, dtype=np.float64), counts, out=np.zeros(len(dists)), where=counts > 0
        )
    else:
        mean = np.full(len(dists), float(dists[finite].mean()) if finite.any() else 0.0)
    local = max(0.0, params.local_connectivity - 1.0)
    from ._evmap_kernels import memberships, smooth_knn
    from ._kernels import LAUNCH_LOCK

    with LAUNCH_LOCK:  # parallel kernels, one launch at a time
        sigma, rho = smooth_knn(np.ascontiguousarray(dists), float(params.n_neighbors), local, mean)
        weights = memberships(cols, dists, sigma, rho)
    weights[cols < 0] = 0.0
    weights[~used] = 0.0
    cols[weights <= 0] = -1
    return cols, weights


def epochs_per_sample(weights: np.ndarray, n_epochs: int, top: float | None = None) -> np.ndarray:
    """How often each edge is sampled (the transform's and :mod:`.refmap`'s): umap's rule.

    Parameters
    ----------
    weights, n_epochs
        Edge weights (any shape) and epochs of the optimisation.
    top
        The weight sampled every epoch (default: the largest weight, as umap).

    Returns
    -------
    numpy.ndarray
        Epochs between samples per edge, -1 where ``w <= 0``; ``n_epochs * w / top`` is
        rounded in the weights' precision, as umap (it decides which epochs sample an edge).
    """
    weights = np.asarray(weights)
    top = weights.max() if top is None else top
    n_samples = n_epochs * (weights / top)
    with np.errstate(divide="ignore"):
        return np.where(n_samples > 0, float(n_epochs) / n_samples.astype(np.float64), -1.0)


def _initial_positions(cols: np.ndarray, weights: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Place cells as umap's ``init_graph_transform``: weighted mean of the neighbours' coordinates.

    As in umap, a neighbour of weight exactly 1 (a duplicate of a reference cell) places
    the cell on it; with several, the one with the smallest reference index wins.
    """
    n = len(cols)
    # umap walks each row in reference-index order (CSR) and sums in float32: same here, so
    # the start (whose bits also seed the cell's random numbers) matches umap's exactly
    order = np.argsort(np.where(cols >= 0, cols, np.iinfo(np.int64).max), axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    total = weights.sum(axis=1, dtype=np.float32)
    init = np.zeros((n, coords.shape[1]), dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        for e in range(cols.shape[1]):
            active = cols[:, e] >= 0
            share = (weights[active, e] / total[active])[:, None]
            init[active] += share * coords[cols[active, e]]
    exact = (weights == 1.0) & (cols >= 0)
    has_exact = exact.any(axis=1)
    if has_exact.any():
        first = np.argmax(exact, axis=1)
        init[has_exact] = coords[cols[has_exact, first[has_exact]]]
    init[total <= 0] = np.nan
    return init.astype(np.float32)


def transform(
    indices: np.ndarray,
    distances: np.ndarray,
    reference_coords: np.ndarray,
    params: MapParams,
    *,
    seed: int | None = None,
    n_epochs: int | None = None,
    n_frames: int = 0,
    max_sampled: int = 2000,
    per_cell: bool = True,
) -> MapTransform:
    """Place query cells on a reference map from their reference neighbours (umap's transform).

    By default (``per_cell``) every cell is placed independently of the others: umap-learn
    scales the edge pruning and sampling schedule by the batch's largest membership weight,
    floors ``sigma`` by the batch's mean distance and picks the epochs from the batch size;
    here those are the largest possible weight (1), the cell's own mean distance and the
    epochs umap runs for up to 10,000 cells. Each cell's random stream is umap's seed offset
    by the bits of its own starting position. A cell therefore lands on the same spot
    whether it is placed alone, in a subset, reordered or in Dask chunks.

    Parameters
    ----------
    indices, distances
        ``(n_cells, k)`` nearest reference cells of each query cell in the analysis space and
        their cosine distances (from :func:`scembed_core.labels.vote.query_reference_neighbors`);
        rows of cells without an embedding hold -1 / NaN and stay NaN.
    reference_coords
        ``(n_reference, 2)`` map coordinates of the reference cells.
    params
        The map's :class:`MapParams`.
    seed
        Seed of the negative sampling (default: the map's ``transform_seed``, as umap).
    n_epochs
        Override the epochs (umap's rule by default: 100 for <= 10,000 cells, 30 above).
        Chunked callers pass the count for the whole dataset.
    n_frames
        Record this many intermediate frames (evenly spaced epochs) for an animation.
    max_sampled
        Cells recorded in the frames at most (a seeded random sample when there are more).
    per_cell
        Place each cell independently of the batch (default); False follows umap-learn's
        batch-relative rules exactly (for comparison with umap-learn).

    Returns
    -------
    :class:`MapTransform`
    """
    indices = np.asarray(indices)
    distances = np.asarray(distances)
    ref = np.ascontiguousarray(reference_coords, dtype=np.float32)
    if indices.shape != distances.shape or indices.ndim != 2:
        raise ParameterError(
            f"Neighbour indices {indices.shape} and distances {distances.shape} must be two "
            "matrices of the same shape (cells x k)."
        )
    if ref.ndim != 2 or ref.shape[1] != 2 or not np.isfinite(ref).all():
        raise ParameterError("Reference map coordinates must be a finite (n_reference, 2) array.")
    n = len(indices)
    if n_epochs is not None:
        epochs = int(n_epochs)
    else:
        epochs = params.transform_epochs(0 if per_cell else n)
    if epochs < 1:
        raise ParameterError(f"n_epochs must be >= 1, got {epochs}.")
    seed = params.transform_seed if seed is None else int(seed)

    cols, weights = _membership(indices, distances, params, len(ref), per_cell)
    initial = _initial_positions(cols, weights, ref)
    position = initial.copy()

    # umap: drop edges lighter than max / n_epochs; epochs_per_sample = max / weight
    if weights.size and weights.max() > 0:
        top = np.float32(1.0) if per_cell else weights.max()
        weights = np.where(weights < top / float(epochs), 0.0, weights)
        cols = np.where(weights > 0, cols, -1)
        per_sample = epochs_per_sample(weights, epochs, top)
    else:
        per_sample = np.full(weights.shape, -1.0)

    rng_state = np.random.RandomState(seed).randint(_INT32_MIN, _INT32_MAX, 3).astype(np.int64)
    bits = np.nan_to_num(initial[:, 0]).astype(np.float64).view(np.int64)
    rng_states = rng_state[None, :] + bits[:, None]

    sample = snap_epochs = None
    snap_slot = np.full(n, -1, dtype=np.int64)
    if n_frames > 0 and n:
        rows = np.flatnonzero(np.isfinite(initial[:, 0]))
        if len(rows) > max_sampled:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_sampled, replace=False))
        sample = rows
        snap_slot[rows] = np.arange(len(rows))
        count = min(int(n_frames), epochs)
        snap_epochs = np.unique(np.linspace(0, epochs - 1, count + 1).round().astype(np.int64)[1:])
    else:
        snap_epochs = np.empty(0, dtype=np.int64)
    slots = 0 if sample is None else len(sample)
    snaps = np.zeros((len(snap_epochs), slots, 2), dtype=np.float32)

    if n:
        from ._evmap_kernels import optimize
        from ._kernels import LAUNCH_LOCK
        from .stopping import watch

        with LAUNCH_LOCK, watch("The projection onto the reference map") as stop:
            optimize(
                position,
                ref,
                np.ascontiguousarray(cols, dtype=np.int64),
                np.ascontiguousarray(per_sample, dtype=np.float64),
                np.ascontiguousarray(rng_states, dtype=np.int64),
                epochs,
                float(params.a),
                float(params.b),
                float(params.repulsion_strength),
                float(params.learning_rate) / 4.0,
                float(params.negative_sample_rate),
                snap_epochs,
                snap_slot,
                snaps,
                stop,
            )
    escaped = np.isfinite(initial[:, 0]) & ~np.isfinite(position).all(axis=1)
    if escaped.any():
        raise ReferenceBundleError(
            f"The map's parameters sent {int(escaped.sum()):,} cells to infinite coordinates; "
            "its map.json is not one a fitted UMAP map has."
        )
    result = MapTransform(coords=position, initial=initial, n_epochs=epochs)
    if sample is not None:
        result.sample = sample
        result.frames = np.concatenate([initial[sample][None], snaps], axis=0)
        result.frame_epochs = np.concatenate([[0], snap_epochs + 1]).astype(np.int64)
    return result


def warm() -> float:
    """Compile (or load from numba's on-disk cache) the kernels on a tiny problem.

    Returns the seconds it took.
    """
    import time

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 2)).astype(np.float32)
    indices = np.tile(np.arange(5), (3, 1))
    distances = np.sort(rng.uniform(0.1, 0.5, size=(3, 5)).astype(np.float32), axis=1)
    transform(indices, distances, ref, MapParams(a=1.577, b=0.895), n_epochs=3, n_frames=2)
    return time.perf_counter() - started
