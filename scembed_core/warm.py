"""Load what the first projection needs before anyone clicks: compiled kernels and libraries.

A fresh process pays, on its first projection, for loading numba's compiled kernels (or
compiling them when the on-disk cache is empty) and for importing the clustering's
library (igraph). :func:`warm_projection` does all of it
on a few real cells of the bundled demo query, so the app's first "Project cells" (its
server runs it in a background thread once the landing page is drawn) and the command
line's first run do not. ``python -m scembed_core.warm`` fills numba's on-disk cache at
install time (``make venv`` runs it), so not even the first server compiles anything; it
also fits a map on a few cells (:func:`warm_mapfit`), so that a reference build's map fit
(:mod:`scembed_core.refmap`) loads its kernels from that cache too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reference import Reference

__all__ = ["warm_projection", "warm_mapfit"]

#: Demo cells projected by the warm-up (enough for a kNN graph, a few milliseconds of work).
N_WARM_CELLS = 40


def warm_projection(reference: Reference | None = None) -> dict[str, float]:
    """Run the projection path once on a few demo cells; seconds per step.

    Parameters
    ----------
    reference
        The reference to warm with (default: the built-in one, loaded here).

    Returns
    -------
    dict
        Seconds taken by each step: ``ev_kernels``, ``reference``, ``project`` (map, pool,
        neighbours), ``labels`` (label transfer, which computes the reference's own
        statistics that every later transfer reuses: the Unknown rule's class statistics
        and calibration; absent for a reference without labels) and ``cluster`` (kNN
        graph and Louvain).

    """
    from .project import warm_ev

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    warm_ev()
    seconds["ev_kernels"] = time.perf_counter() - started

    from .cluster import build_knn_graph, louvain
    from .io import read_dataset
    from .project import project
    from .reference import DEMO_QUERY_PATH, resolve_reference

    started = time.perf_counter()
    if reference is None:
        reference = resolve_reference("default")
    seconds["reference"] = time.perf_counter() - started
    started = time.perf_counter()
    cells = read_dataset(DEMO_QUERY_PATH)[:N_WARM_CELLS].copy()
    result = project(cells, reference, ev=False)
    seconds["project"] = time.perf_counter() - started
    if reference.can_transfer_labels:
        from .labels.assign import assign_labels

        started = time.perf_counter()  # also fills the reference's memoized label statistics
        assign_labels(
            result.embedding,
            reference,
            neighbors=result.neighbors,
            n_regions=result.coverage.n_regions_per_cell,
            warn=False,
        )
        seconds["labels"] = time.perf_counter() - started
    started = time.perf_counter()
    louvain(build_knn_graph(result.space, n_neighbors=15, seed=0), resolution=1.0, seed=0)
    seconds["cluster"] = time.perf_counter() - started
    return seconds


def warm_mapfit() -> float:
    """Fit a map on a few random cells: every kernel of the map fit compiled or loaded.

    Returns
    -------
    float
        Seconds taken (the first time, mostly numba compiling into its on-disk cache).
    """
    import numpy as np

    from .refmap import fit_reference_map

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    cells = rng.normal(size=(N_WARM_CELLS, 8)).astype(np.float32)
    fit_reference_map(cells, n_neighbors=5)
    return time.perf_counter() - started


if __name__ == "__main__":
    import json

    seconds = warm_projection()
    seconds["map_fit"] = warm_mapfit()
    print(json.dumps({k: round(v, 3) for k, v in seconds.items()}))
