"""The Project page's pipeline, one function for a click and for the server's warm-up.

:func:`project_dataset` runs the stages behind "Project cells" (peaks onto the universe,
E-projection, EV-projection onto the map, label transfer, clusters) as cached engine calls
shared by all sessions (:mod:`scembed_app.cached`). The page runs it on a click, inside its
status box. A fresh server runs it once on the built-in demo under a new tab's settings
(:func:`warm_demo`, from :func:`scembed_app.quickref.start_projection_warmup`), so the first
visitor's "Project cells" on the demo finds every result in the cache and only draws: one
implementation, so the warm-up fills exactly the entries the click reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from scembed_app import cached, results, state
from scembed_app.uploads import LoadedDataset

__all__ = ["ANIMATION_FRAMES", "STAGES", "project_dataset", "warm_demo"]

#: Frames of the "watch it project" animation (a sample of <= 2,000 cells).
ANIMATION_FRAMES = 20
#: The stages, in order, as the page's status box names them.
STAGES = {
    "coverage": "Map peaks onto the reference universe",
    "e": "E-projection (pool region vectors, find reference neighbours)",
    "ev": "EV-projection onto the reference map",
    "labels": "Label transfer",
    "clusters": "kNN graph and Louvain clustering",
}

Stage = Callable[[str], contextlib.AbstractContextManager]


@contextlib.contextmanager
def _quiet(label: str) -> Iterator[None]:
    yield


def project_dataset(
    dataset: LoadedDataset,
    reference_key: str,
    reference: Any,
    *,
    ev: bool = True,
    stage: Stage | None = None,
    session: Mapping[str, Any] | None = None,
) -> state.ProjectionRun:
    """Project ``dataset`` onto ``reference``: every stage of "Project cells", cached.

    Parameters
    ----------
    dataset
        The query (its digest keys every cache entry).
    reference_key
        The reference's cache key (:func:`scembed_app.cached.reference_key`).
    reference
        The reference.
    ev
        Also place the cells on the reference map (EV-projection), when it has one.
    stage
        ``stage(label)``: a context manager around each stage (the page's
        :meth:`~scembed_app.progress.StageTimer.stage`); none by default.
    session
        The tab's state the label and cluster settings come from (``st.session_state``
        when omitted).

    Returns
    -------
    scembed_app.state.ProjectionRun
        The run (``seconds`` 0: the caller times it).

    Raises
    ------
    scembed_core.errors.ScEmbedError
        What the engine raises for this input (the page shows it).
    """
    stage = stage or _quiet
    adata = dataset.adata
    with stage(STAGES["coverage"]):
        cached.cached_coverage(dataset.digest, reference_key, adata, reference)
    with stage(STAGES["e"]):
        projection = cached.cached_e_project(dataset.digest, reference_key, adata, reference)
    run = state.ProjectionRun(
        dataset_digest=dataset.digest,
        reference_key=reference_key,
        projection=projection,
        n_cells=adata.n_obs,
        n_projected=int(np.isfinite(projection.embedding).all(axis=1).sum()),
        seconds=0.0,
    )
    if ev and reference.can_ev_project:
        with stage(STAGES["ev"]):
            cached.start_kernel_warmup().join()  # done at server start, normally
            placed = cached.cached_ev_project(
                run.cache_key,
                ANIMATION_FRAMES,
                projection.embedding,
                reference,
                projection.neighbors,
            )
        moved = dataclasses.replace(projection, umap=placed.coords, map_transform=placed)
        run = dataclasses.replace(run, projection=moved)
    if reference.can_transfer_labels:
        with stage(STAGES["labels"]):
            results.labels(run, reference, adata.obs_names, session=session)
    with stage(STAGES["clusters"]):
        results.current_clusters(run, dataset, session=session)
    return run


def warm_demo(reference_key: str, reference: Any) -> state.ProjectionRun:
    """Project the built-in demo as a new tab would, filling the shared cache (warm-up).

    Parameters
    ----------
    reference_key, reference
        The built-in reference and its cache key.

    Returns
    -------
    scembed_app.state.ProjectionRun
        The demo's run (the click finds each of its results cached).
    """
    return project_dataset(
        cached.cached_demo_dataset(),
        reference_key,
        reference,
        ev=reference.can_ev_project,
        session=state.defaults(),
    )
