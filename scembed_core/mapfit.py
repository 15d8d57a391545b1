"""Exact cosine neighbours, and the reference map fitted with umap-learn (for comparisons).

References are built with :func:`scembed_core.refmap.fit_reference_map` (umap-learn's
recipe on the engine's cached kernels, no umap-learn import); :func:`fit_reference_umap` is
kept for comparisons with umap-learn (``transformable=True`` gives a model whose own
``transform`` works) and :func:`exact_cosine_neighbors` serves both.

umap-learn has no progress callback, and before its first layout epoch it spent most of a
reference's map stage silent (measured on the built-in reference's 8,785 cells on the
shared 2-core VM: 30 s building a random-projection forest and 59 s of NN-descent, mostly
numba compiling pynndescent, then 22 s for the fuzzy graph, whose numba kernels are
compiled once per process, and the spectral start). So the steps are run here,
each reporting:

1. umap-learn is imported, a step per library (tens of seconds on a busy machine: its
   dependency pynndescent compiles numba kernels at import), then its fuzzy-graph kernels are
   compiled on a few cells (a no-op once compiled in
   this process), reported as a step of its own;
2. the exact cosine nearest neighbours are found in chunks of cells (a matrix product per
   chunk, vectorised), reported after every chunk (up to :data:`EXACT_MAX_CELLS` cells;
   larger references use umap-learn's NN-descent, one message) and handed to umap-learn as
   ``precomputed_knn``;
3. the fuzzy graph and the spectral start (one message: umap-learn runs them in one call);
4. the layout epochs: umap-learn's loop runs under a ``tqdm`` bar whose arguments it takes
   (``tqdm_kwds``); the bar is pointed at :class:`_EpochSink`, which reads ``n/total``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ._types import ProgressCallback
from .stopping import check_stop

__all__ = ["fit_reference_umap", "exact_cosine_neighbors", "LAYOUT_SHARE", "EXACT_MAX_CELLS"]

#: Share of the map stage given to the layout epochs (the rest: kernels, neighbours, graph).
LAYOUT_SHARE = 0.6
#: Where each step before the layout starts, as a share of the map stage.
_IMPORT_AT, _KERNELS_AT, _NEIGHBORS_AT, _GRAPH_AT = 0.0, 0.05, 0.15, 0.3
#: Exact neighbours up to this many cells (n^2 work); NN-descent above.
EXACT_MAX_CELLS = 60_000
#: Similarities held at once by the exact search (float32: 4 bytes each).
_CHUNK_ELEMENTS = 16_000_000
_EPOCHS = re.compile(r"(\d+)/(\d+)")


class _EpochSink:
    """A file for tqdm whose text ``"n/total"`` becomes ``progress(fraction, message)``.

    It is also where the layout loop can be stopped: each write asks
    :func:`~scembed_core.stopping.check_stop`, whose ``Cancelled`` leaves umap-learn's epoch
    loop (once: tqdm's own clean-up writes after it are ignored).
    """

    encoding = "utf-8"

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.last = -1
        self.stopped = False

    def write(self, text: str) -> int:
        if self.stopped:
            return len(text)
        try:
            check_stop("The map fit")
        except BaseException:
            self.stopped = True
            raise
        found = _EPOCHS.findall(text)
        if found:
            done, total = (int(x) for x in found[-1])
            if total > 0 and done != self.last:
                self.last = done
                share = 1 - LAYOUT_SHARE + LAYOUT_SHARE * done / total
                self.progress(share, f"layout epoch {done}/{total}")
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


def exact_cosine_neighbors(
    data: np.ndarray,
    k: int,
    *,
    progress: ProgressCallback | None = None,
    task: str = "The map fit",
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest rows by cosine distance (itself first), computed exactly.

    Rows are processed in chunks (one matrix product and one partial sort per chunk, at most
    16 million similarities at a time), with ``progress`` called after each chunk.

    Parameters
    ----------
    data
        ``(n, dim)`` finite vectors.
    k
        Neighbours per row, the row itself included (``k <= n``).
    progress
        ``progress(fraction, message)`` after every chunk (at least eight chunks).
    task
        What a stop between chunks names (:func:`~scembed_core.stopping.check_stop`).

    Returns
    -------
    tuple of numpy.ndarray
        ``(indices, distances)``, both ``(n, k)``: int32 neighbour indices and float32
        cosine distances in ``[0, 2]``, nearest first; row ``i`` starts with ``i``.
    """
    report = progress or (lambda fraction, message: None)
    data = np.asarray(data, dtype=np.float32)
    n = data.shape[0]
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    unit = data / np.where(norms > 0, norms, 1.0)
    chunk = max(1, min(math.ceil(n / 8), _CHUNK_ELEMENTS // max(n, 1)))
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        similarity = unit[start:stop] @ unit.T
        rows = np.arange(stop - start)
        similarity[rows, rows + start] = np.inf  # a row is its own nearest neighbour
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        indices[start:stop] = np.take_along_axis(top, order, axis=1)
        nearest = np.take_along_axis(values, order, axis=1)
        nearest[:, 0] = 1.0
        distances[start:stop] = np.clip(1.0 - nearest, 0.0, 2.0)
        report(stop / n, f"nearest neighbours of {stop:,}/{n:,} cells")
        check_stop(task)
    return indices, distances


def _compile_graph_kernels(k: int) -> None:
    """Run umap-learn's fuzzy graph on a few cells, compiling its numba kernels (once)."""
    from umap.umap_ import fuzzy_simplicial_set

    rng = np.random.default_rng(0)
    few = rng.normal(size=(k + 5, 4)).astype(np.float32)
    indices, distances = exact_cosine_neighbors(few, k)
    fuzzy_simplicial_set(few, k, np.random.RandomState(0), "cosine", {}, indices, distances, False)


def _import_umap(report: ProgressCallback) -> None:
    """Import umap-learn step by step, each step reported (30-40 s on a busy machine).

    Most of it is pynndescent, which umap-learn imports and which compiles its numba
    distance kernels at import (measured with ``python -X importtime -c "import umap"``).
    """
    import sys

    if "umap" in sys.modules:
        return
    share = _KERNELS_AT - _IMPORT_AT
    report(_IMPORT_AT, "importing numba and scikit-learn")
    import numba  # noqa: F401
    import sklearn.base  # noqa: F401

    report(_IMPORT_AT + share / 3, "importing pynndescent (it compiles its distance kernels)")
    import pynndescent  # noqa: F401

    report(_IMPORT_AT + 2 * share / 3, "importing umap-learn")
    import umap  # noqa: F401


def fit_reference_umap(
    embedding: np.ndarray,
    *,
    seed: int = 42,
    n_neighbors: int = 15,
    progress: ProgressCallback | None = None,
    transformable: bool = False,
) -> Any:
    """Fit the 2-D UMAP model of the reference map (paper: umap-learn, random_state=42).

    The metric is cosine, the analysis space's, so the fit's neighbourhoods are the ones
    the transform (and label transfer) search.

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` reference cells in the analysis space.
    seed
        umap-learn's ``random_state``.
    n_neighbors
        Neighbours of the fuzzy graph.
    progress
        ``progress(fraction, message)``: at each step before the layout (kernels, after
        every chunk of the neighbour search, graph and spectral start), then after layout
        epochs (at most four times a second).
    transformable
        Let umap-learn find the neighbours itself, so that the returned model's own
        ``transform`` works (a comparison with umap-learn needs it; the engine places new
        cells with :mod:`scembed_core.evmap` and does not). The neighbour search then
        reports one message.

    Returns
    -------
    umap.UMAP
        The fitted model (its ``embedding_`` are the map coordinates).
    """
    check_stop("The map fit")  # before umap-learn's import, which compiles for seconds
    report = progress or (lambda fraction, message: None)
    _import_umap(report)
    import umap

    n = int(embedding.shape[0])
    exact = not transformable and n_neighbors < n <= EXACT_MAX_CELLS
    precomputed: tuple = (None, None, None)
    if exact:
        report(_KERNELS_AT, "compiling umap-learn's graph kernels (once per process)")
        _compile_graph_kernels(n_neighbors)
        span = _GRAPH_AT - _NEIGHBORS_AT
        indices, distances = exact_cosine_neighbors(
            embedding,
            n_neighbors,
            progress=lambda f, m: report(_NEIGHBORS_AT + span * f, m),
        )
        precomputed = (indices, distances, None)
        report(_GRAPH_AT, "fuzzy graph and spectral start")
    else:
        report(_KERNELS_AT, "nearest neighbours, fuzzy graph and spectral start")
    sink = _EpochSink(report)
    model = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        metric="cosine",
        random_state=seed,
        precomputed_knn=precomputed,
        tqdm_kwds={
            "disable": False,  # umap-learn shows the bar only when verbose unless told
            "file": sink,
            "bar_format": "{n}/{total}",
            "mininterval": 0.25,
            "ascii": True,
        },
    )
    import warnings

    with warnings.catch_warnings():  # "no search index: transform unavailable" (known)
        warnings.filterwarnings("ignore", message="precomputed_knn", category=UserWarning)
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        model.fit(embedding)
    check_stop("The map fit")
    report(1.0, "map fitted")
    return model
