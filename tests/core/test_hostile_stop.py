"""Work that can be stopped (attack run 2026-12, R15, H16): a stop hook and a time budget."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from scembed_core.errors import Cancelled
from scembed_core.evmap import MapParams, transform
from scembed_core.stopping import check_stop, stop_when


def _neighbours(n_cells: int = 40, n_ref: int = 60, k: int = 15, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n_ref, 2)).astype(np.float32)
    indices = np.stack([rng.choice(n_ref, k, replace=False) for _ in range(n_cells)])
    distances = np.sort(rng.uniform(0.05, 0.5, size=(n_cells, k)), axis=1)
    return indices, distances, ref


PARAMS = MapParams(a=1.577, b=0.895)


def test_a_three_billion_epoch_projection_stops_when_the_session_stops():
    indices, distances, ref = _neighbours()
    stopped = threading.Event()
    threading.Timer(1.0, stopped.set).start()  # the session stops one second in
    started = time.monotonic()
    with stop_when(stopped.is_set), pytest.raises(Cancelled, match="stopped"):
        transform(indices, distances, ref, PARAMS, n_epochs=3_000_000_000)
    assert time.monotonic() - started < 20


def test_a_projection_stops_at_its_time_budget():
    indices, distances, ref = _neighbours()
    started = time.monotonic()
    with stop_when(seconds=0.5), pytest.raises(Cancelled, match="time budget"):
        transform(indices, distances, ref, PARAMS, n_epochs=3_000_000_000)
    assert time.monotonic() - started < 20


def test_work_that_is_not_stopped_gives_the_same_result():
    indices, distances, ref = _neighbours()
    plain = transform(indices, distances, ref, PARAMS, n_epochs=50).coords
    with stop_when(lambda: False, seconds=600):
        watched = transform(indices, distances, ref, PARAMS, n_epochs=50).coords
    np.testing.assert_array_equal(plain, watched)


def test_check_stop_outside_stop_when_never_stops():
    check_stop()
    with stop_when(lambda: True), pytest.raises(Cancelled):
        check_stop("Training")
    check_stop()
