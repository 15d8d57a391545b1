"""A landmark map of a large reference: fit on a sample, place the rest, refine (opt-in).

``fit_reference_map(space, landmark_above=N)`` with more than ``N`` cells fits umap-learn's
recipe on :data:`N_LANDMARKS` landmark cells only (a seeded uniform sample, without
replacement), places every other cell on that map with the rule the app places query cells
with, EV-projection (:func:`scembed_core.evmap.transform`, per cell, from its
``n_neighbors`` nearest landmarks), then runs :data:`REFINE_EPOCHS` layout epochs of the
whole graph from those positions. Four steps, each reported:

1. the landmark map (``"landmark map (m of n cells): ..."``): the fit on the landmarks
   (exact neighbours, the layout epochs of their count);
2. the index of landmarks (``"index of landmarks: ..."``):
   :func:`scembed_core.knn.build_cell_index` over them (one thread, seed 0: one graph),
   searched for the other cells' nearest landmarks on every core;
3. placing cells (``"placing cells: ..."``): the other cells transformed in ten chunks (a
   cell's place does not depend on the others placed with it: the one-call result);
4. refining (``"all cells: ..."``): the fit's graph over all cells (the reference's
   neighbours) laid out for :data:`REFINE_EPOCHS` epochs from the placed start.

Not the default: on 100,000 SMOTE-style cells (BENCHMARKS.md, ``mapfit_own``) it gave a
higher trustworthiness (0.86 against 0.66), 2-D label agreement (0.659 against 0.639) and
demo vote accuracy (0.672 against 0.601) than umap-learn's 200 epochs over all cells, but a
lower demo neighbourhood preservation (0.343 against 0.383; 0.04-0.12 without the
refinement, 0.25-0.29 with 30-50 of its epochs), outside the 0.01 the brief allowed, and reached it
in about the same time. The reference keeps every cell's coordinates, so the app places
query cells against all of them either way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._types import ProgressCallback
from .evmap import MapParams
from .stopping import check_stop

__all__ = ["N_LANDMARKS", "choose_landmarks", "fit_landmark_map"]

#: Landmark cells of a landmark map.
N_LANDMARKS = 20_000
#: Layout epochs over all cells from the placed start, and their first learning rate.
REFINE_EPOCHS, REFINE_ALPHA = 100, 1.0
#: Epochs of the transform placing the other cells (None: the transform's rule, 100).
PLACE_EPOCHS: int | None = None
#: Shares of the map stage: the landmark map, the index of landmarks, placing, refining.
_INDEX_AT, _PLACE_AT, _REFINE_AT = 0.35, 0.4, 0.5


def choose_landmarks(n_cells: int, n_landmarks: int, seed: int) -> np.ndarray:
    """Pick the landmark cells: a seeded uniform sample without replacement, in row order.

    Parameters
    ----------
    n_cells
        Cells in the reference.
    n_landmarks
        Landmarks wanted (at most ``n_cells``).
    seed
        Seed of the draw (the map's seed).

    Returns
    -------
    numpy.ndarray
        ``(n_landmarks,)`` sorted row indices.
    """
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_cells, min(n_landmarks, n_cells), replace=False))


def fit_landmark_map(
    space: np.ndarray,
    fit: Callable[..., tuple[np.ndarray, MapParams]],
    refine: Callable[..., np.ndarray],
    *,
    n_landmarks: int,
    seed: int,
    n_neighbors: int,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, MapParams]:
    """Fit the map on landmark cells and place every other cell on it by EV-projection.

    Parameters
    ----------
    space
        ``(n_cells, dim)`` finite float32 reference cells in the analysis space.
    fit
        The map fit of all given cells (:func:`scembed_core.refmap.fit_reference_map` with
        the landmark rule off and the caller's seed, neighbours and epochs bound), called
        as ``fit(landmarks, progress=)``.
    refine
        Layout epochs over all cells from the placed coordinates, called as
        ``refine(coords, REFINE_EPOCHS, REFINE_ALPHA, progress)``; returns the coordinates.
    n_landmarks
        Landmark cells (fewer than ``n_cells``).
    seed
        Seed of the landmark draw and of the landmark map.
    n_neighbors
        Neighbours of the landmark map's graph and landmarks per placed cell.
    progress
        ``progress(fraction, message)`` for each step: ``"landmark map (m of n cells):
        ..."``, ``"index of landmarks: ..."``, ``"placing cells: ..."``, ``"all cells: ..."``
        (the refinement).

    Returns
    -------
    tuple
        ``(coords, params)``: ``(n_cells, 2)`` float32 coordinates of every cell and the
        landmark map's :class:`~scembed_core.evmap.MapParams` (``fit["landmarks"]`` records
        the landmark count).
    """
    import dataclasses

    from .evmap import transform
    from .knn import build_cell_index, knn_query_all_threads

    report = progress or (lambda fraction, message: None)
    n = len(space)
    chosen = choose_landmarks(n, n_landmarks, seed)
    m = len(chosen)
    landmarks = np.ascontiguousarray(space[chosen])
    coords_l, params = fit(
        landmarks,
        progress=lambda f, msg: report(
            _INDEX_AT * f, f"landmark map ({m:,} of {n:,} cells): {msg}"
        ),
    )
    others = np.ones(n, dtype=bool)
    others[chosen] = False
    rest = np.flatnonzero(others)
    span = _PLACE_AT - _INDEX_AT
    index = build_cell_index(
        landmarks,
        progress=lambda f, msg: _step(report, _INDEX_AT + span * f, f"index of landmarks: {msg}"),
    )
    indices, distances = knn_query_all_threads(index, space[rest], n_neighbors)
    coords = np.empty((n, 2), dtype=np.float32)
    coords[chosen] = coords_l
    chunk = max(1, -(-len(rest) // 10))
    for start in range(0, len(rest), chunk):
        stop = min(start + chunk, len(rest))
        placed = transform(
            indices[start:stop], distances[start:stop], coords_l, params, n_epochs=PLACE_EPOCHS
        ).coords
        lost = ~np.isfinite(placed).all(axis=1)  # no landmark within reach: on the nearest
        placed[lost] = coords_l[indices[start:stop][lost, 0]]
        coords[rest[start:stop]] = placed
        _step(
            report,
            _PLACE_AT + (_REFINE_AT - _PLACE_AT) * stop / len(rest),
            f"placing cells: {stop:,}/{len(rest):,} on the landmark map",
        )
    coords = refine(
        coords,
        REFINE_EPOCHS,
        REFINE_ALPHA,
        lambda f, msg: report(_REFINE_AT + (1 - _REFINE_AT) * f, f"all cells: {msg}"),
    )
    fit_info = {**params.fit, "landmarks": int(m)}
    return coords, dataclasses.replace(params, fit=fit_info)


def _step(report: ProgressCallback, fraction: float, message: str) -> None:
    report(fraction, message)
    check_stop("The map fit")
