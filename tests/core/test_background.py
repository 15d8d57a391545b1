"""``scembed_core._background.Background``: a call beside the caller's work (a build's map)."""

from __future__ import annotations

import threading
import time

import pytest

from scembed_core._background import Background
from scembed_core.errors import Cancelled, ParameterError
from scembed_core.stopping import check_stop, stop_when


def _steps(n: int, *, progress, pause: float = 0.0) -> list[int]:
    done = []
    for i in range(n):
        check_stop("The steps")
        done.append(i)
        progress((i + 1) / n, f"step {i + 1}/{n}")
        time.sleep(pause)
    return done


def test_the_result_comes_back_with_every_report_in_order_in_the_callers_thread():
    seen = []
    job = Background(_steps, 5, pause=0.01)
    caller = threading.get_ident()
    result = job.result(lambda f, m: seen.append((f, m, threading.get_ident())))
    assert result == [0, 1, 2, 3, 4]
    assert [(f, m) for f, m, _ in seen] == [((i + 1) / 5, f"step {i + 1}/5") for i in range(5)]
    assert {t for _, _, t in seen} == {caller}, "reports are replayed by the caller's thread"
    assert job.latest() is None, "collected: nothing more to show beside the caller's work"


def test_its_exception_is_raised_in_the_caller():
    def fails(*, progress):
        raise ParameterError("bad input")

    with pytest.raises(ParameterError, match="bad input"):
        Background(fails).result()


def test_it_honours_the_callers_stop_hook_and_abandon():
    stop = threading.Event()
    with stop_when(stop.is_set):
        job = Background(_steps, 10_000, pause=0.001, name="scembed-test-steps")
    stop.set()  # the session stops: the thread's next check_stop raises
    with pytest.raises(Cancelled, match="The steps did not finish"):
        job.result()

    job = Background(_steps, 10_000, pause=0.001, name="scembed-test-steps")
    job.abandon()  # the caller's own work failed: the thread ends at its next check
    assert not [t for t in threading.enumerate() if t.name == "scembed-test-steps"]
    with pytest.raises(Cancelled):
        job.result()


def test_a_build_whose_map_ran_beside_its_labels_has_the_map_fitted_alone(planted_reference):
    import numpy as np

    from scembed_core.refmap import fit_reference_map

    coords, params = fit_reference_map(planted_reference.cell_space)
    np.testing.assert_array_equal(planted_reference.cells.obsm["X_umap"], coords)
    assert planted_reference.map_params == params
    assert planted_reference.label_model is not None and planted_reference.can_ev_project
