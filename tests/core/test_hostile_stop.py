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


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Compile (or load) the kernel first: the timings below are of stopping, not compiling."""
    indices, distances, ref = _neighbours()
    transform(indices, distances, ref, PARAMS, n_epochs=3)


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


# Every long kernel, not only the projection: training, map fit, classifier, resolution search.

FAST = dict(window=20, vector_size=8, min_count=2, workers=1, alpha=0.05)


def test_word2vec_training_stops_between_epochs_when_the_session_stops(planted):
    from scembed_core.project import regions_of
    from scembed_core.train import TrainingParams, train_region_vectors

    stopped = threading.Event()
    epochs: list[float] = []

    def progress(fraction: float, message: str) -> None:
        if "epoch" in message:
            epochs.append(fraction)
            if len(epochs) == 3:
                stopped.set()  # the tab closes during the third epoch's report

    params = TrainingParams(epochs=1_000_000, **FAST)
    with stop_when(stopped.is_set), pytest.raises(Cancelled, match="Word2Vec training"):
        train_region_vectors(planted.X, regions_of(planted), params, progress=progress)
    assert len(epochs) == 3  # the next epoch never started


def test_a_stopped_word2vec_epoch_ends_early():
    import scipy.sparse as sp

    from scembed_core._corpus import ShuffledCorpus

    x = sp.csr_matrix(np.ones((10_000, 3), dtype=np.float32))
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2  # asked before each block: two blocks, then stop

    assert len(list(ShuffledCorpus(x, 0))) == 10_000
    assert len(list(ShuffledCorpus(x, 0, stop))) == 2 * 2048


def test_a_watched_training_that_is_not_stopped_gives_the_same_vectors(planted):
    from scembed_core.project import regions_of
    from scembed_core.train import TrainingParams, train_region_vectors

    params = TrainingParams(epochs=3, **FAST)
    plain, _, _ = train_region_vectors(planted.X, regions_of(planted), params)
    with stop_when(lambda: False, seconds=600):
        watched, _, _ = train_region_vectors(planted.X, regions_of(planted), params)
    np.testing.assert_array_equal(plain, watched)


def test_reference_training_stopped_in_its_label_stages_stops_its_map_too(planted):
    """The map is fitted in a thread beside the label stages: a stop there ends both."""
    from scembed_core.train import TrainingParams, train_reference

    reached_labels = threading.Event()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("Label classifier"):
            reached_labels.set()  # the session stops once the label stages begin

    params = TrainingParams(epochs=2, **FAST)
    with stop_when(reached_labels.is_set), pytest.raises(Cancelled, match="did not finish"):
        train_reference(planted, label_key="cell_type", params=params, progress=progress)
    assert reached_labels.is_set()
    assert not [t for t in threading.enumerate() if t.name == "scembed-map"], "map left running"


def test_the_map_layout_loop_stops_at_its_next_epoch_report():
    from scembed_core.mapfit import _EpochSink

    reports = []
    sink = _EpochSink(lambda fraction, message: reports.append(message))
    sink.write("3/200")
    assert reports == ["layout epoch 3/200"]
    with stop_when(lambda: True):
        with pytest.raises(Cancelled, match="map fit"):
            sink.write("4/200")
        sink.write("4/200")  # tqdm's clean-up after the stop writes again: not a second error
    assert reports == ["layout epoch 3/200"]


def test_classifier_and_resolution_search_stop(planted):
    from scembed_core.cluster import build_knn_graph, find_resolution
    from scembed_core.labels.classifier import fit_label_model

    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(120, 8)).astype(np.float32)
    labels = np.repeat(np.array(["a", "b", "c"]), 40)
    calls = []

    def after_first_fit() -> bool:  # stops once the calibration fit has reported
        return bool(calls)

    with stop_when(after_first_fit), pytest.raises(Cancelled, match="label classifier"):
        fit_label_model(embedding, labels, progress=lambda f, m: calls.append(m))
    assert calls and calls[0].startswith("fitting on")  # it had begun, then stopped
    graph = build_knn_graph(embedding, 10)
    assert find_resolution(graph, 3, n_sweep=3, n_bisect=1).n_clusters >= 1
    with stop_when(lambda: True), pytest.raises(Cancelled, match="resolution search"):
        find_resolution(graph, 3)


def test_atlas_clustering_stops_between_chunks():
    from scembed_core.atlas import cluster_large

    embedding = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    assigning = threading.Event()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("Assigning"):
            assigning.set()  # the session stops after the first chunk is assigned

    labels = cluster_large(embedding, n_sample=400, chunk_size=500, random_state=0)
    assert (labels >= 0).all()
    with stop_when(assigning.is_set), pytest.raises(Cancelled, match="atlas clustering"):
        cluster_large(embedding, n_sample=400, chunk_size=500, random_state=0, progress=progress)
    assert assigning.is_set()
