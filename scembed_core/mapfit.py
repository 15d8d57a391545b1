"""Fitting the reference map with umap-learn, reporting progress through every epoch.

The only place umap-learn is used: the fit's coordinates and curve parameters go into the
bundle as arrays (:class:`scembed_core.evmap.MapParams`) and new cells are placed by
:mod:`scembed_core.evmap`. umap-learn has no progress callback, but its layout loop runs
under a ``tqdm`` bar whose arguments it takes (``tqdm_kwds``): the bar is pointed at
:class:`_EpochSink`, which reads ``n/total`` and calls the engine's ``progress``. The
nearest-neighbour search, fuzzy graph and spectral start before the first epoch report one
message (they have no finer steps to report).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ._types import ProgressCallback
from .stopping import check_stop

__all__ = ["fit_reference_umap", "LAYOUT_SHARE"]

#: Share of the map stage given to the layout epochs (the rest: neighbours, graph, start).
LAYOUT_SHARE = 0.85
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


def fit_reference_umap(
    embedding: np.ndarray,
    *,
    seed: int = 42,
    n_neighbors: int = 15,
    progress: ProgressCallback | None = None,
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
        ``progress(fraction, message)``: once before the neighbour search, then after
        layout epochs (at most four times a second).

    Returns
    -------
    umap.UMAP
        The fitted model (its ``embedding_`` are the map coordinates).
    """
    check_stop("The map fit")  # before umap-learn's import, which compiles for seconds
    import umap

    report = progress or (lambda fraction, message: None)
    report(0.0, "nearest neighbours, fuzzy graph and spectral start")
    sink = _EpochSink(report)
    model = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        metric="cosine",
        random_state=seed,
        tqdm_kwds={
            "disable": False,  # umap-learn shows the bar only when verbose unless told
            "file": sink,
            "bar_format": "{n}/{total}",
            "mininterval": 0.25,
            "ascii": True,
        },
    )
    model.fit(embedding)
    check_stop("The map fit")
    report(1.0, "map fitted")
    return model
