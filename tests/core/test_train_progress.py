"""Training reports progress through every stage, with a time left measured, never assumed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scembed_core._progress import Stages, time_left
from scembed_core.train import BUILD_STAGES, TrainingParams, train_reference


@pytest.fixture(scope="module")
def trained_with_progress(planted):
    calls: list[tuple[float, str]] = []
    params = TrainingParams(epochs=4, window=20, vector_size=16, min_count=2, workers=1)
    reference = train_reference(
        planted[:240].copy(),
        label_key="cell_type",
        params=params,
        genome="test",
        progress=lambda fraction, message: calls.append((fraction, message)),
    )
    return reference, calls


def test_progress_moves_forward_through_every_stage(trained_with_progress):
    reference, calls = trained_with_progress
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions), "the bar never goes back"
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    messages = [m for _, m in calls]
    for title in ("Word2Vec", *(t for k, (_, t) in BUILD_STAGES.items() if k != "unknown")):
        assert any(m.startswith(title) for m in messages), (title, messages)
    epochs = [m for m in messages if re.match(r"Word2Vec: epoch \d/4 \(\d+\.\d s per epoch", m)]
    assert len(epochs) == 4, messages
    assert reference.map_params is not None


def test_map_fitting_reports_its_layout_epochs(trained_with_progress):
    _, calls = trained_with_progress
    title = BUILD_STAGES["map"][1]
    layout = [(f, m) for f, m in calls if m.startswith(title) and "layout epoch" in m]
    assert len({f for f, _ in layout}) >= 2, "the bar moves during the map's epochs"
    last = re.search(r"layout epoch (\d+)/(\d+)", layout[-1][1])
    assert last.group(1) == last.group(2), "the last epoch is reported"
    start, span, _ = Stages(None, BUILD_STAGES).spans["map"]
    assert all(0.6 + 0.4 * start <= f <= 0.6 + 0.4 * (start + span) + 1e-9 for f, _ in layout)


def test_the_maps_progress_shows_beside_the_label_stages(trained_with_progress):
    """The map is fitted in a thread meanwhile: the label stages' messages say where it is."""
    _, calls = trained_with_progress
    labels = [m for _, m in calls if m.startswith(("Label classifier", "Calibrating"))]
    beside = [m.split(" · map: ", 1)[1] for m in labels if " · map: " in m]
    assert beside, labels
    in_stage = [m for _, m in calls if m.startswith("Fitting the reference map")]
    assert not any(" · map: " in m for m in in_stage), "its own stage has no suffix"
    assert " · map: " not in calls[-1][1], "nothing beside the end: the map is done"


def test_classifier_calibration_reports_its_steps(trained_with_progress):
    _, calls = trained_with_progress
    steps = [m for _, m in calls if m.startswith("Label classifier")]
    assert any("held-out" in m for m in steps) and any("final fit" in m for m in steps), steps


def test_time_left_is_measured_on_the_stage():
    seen = []
    now = [100.0]
    stages = Stages(
        lambda f, m: seen.append((f, m)), {"a": (1, "A"), "b": (3, "B")}, clock=lambda: now[0]
    )
    stages.stage("a")
    update = stages.stage("b", "starting")  # b begins at t = 100
    now[0] = 110.0
    update(0.25, "epoch 1/4")  # 10 s for a quarter: 30 s left
    now[0] = 130.0
    update(0.5, "epoch 2/4")  # 30 s for half: 30 s left
    assert seen[0] == (0.0, "A")
    assert seen[1] == (0.25, "B: starting")
    assert seen[2] == (0.25 + 0.75 * 0.25, "B: epoch 1/4, about 30 s left")
    assert seen[3] == (0.25 + 0.75 * 0.5, "B: epoch 2/4, about 30 s left")
    assert time_left(0.5, 0.5) == "" and time_left(5, 0.0) == "" and time_left(5, 1.0) == ""
    assert time_left(600, 0.5) == "about 10 min left"


def test_map_fitting_moves_before_its_first_layout_epoch(trained_with_progress):
    """The steps before the layout (neighbours, graph, spectral start) report themselves."""
    _, calls = trained_with_progress
    start, span, title = Stages(None, BUILD_STAGES).spans["map"]
    low, high = 0.6 + 0.4 * start, 0.6 + 0.4 * (start + span)
    in_map = [(f, m) for f, m in calls if m.startswith(title)]
    first_epoch = next(i for i, (_, m) in enumerate(in_map) if "layout epoch" in m)
    before = in_map[:first_epoch]
    assert all(low - 1e-9 <= f <= high + 1e-9 for f, _ in in_map)
    assert len({round(f, 6) for f, _ in before}) >= 6, before
    neighbours = [m for _, m in before if "nearest neighbours of" in m]
    assert len(neighbours) >= 4 and "240/240 cells" in neighbours[-1], neighbours
    assert any(m.endswith("fuzzy graph") for _, m in before)
    assert any(m.endswith("spectral start") for _, m in before)


def test_exact_cosine_neighbors_match_a_brute_force_search():
    from sklearn.neighbors import NearestNeighbors

    from scembed_core.mapfit import exact_cosine_neighbors

    rng = np.random.default_rng(3)
    data = rng.normal(size=(300, 12)).astype(np.float32)
    seen = []
    indices, distances = exact_cosine_neighbors(data, 10, progress=lambda f, m: seen.append(f))
    theirs_d, theirs_i = (
        NearestNeighbors(metric="cosine", algorithm="brute").fit(data).kneighbors(data, 10)
    )
    assert (indices[:, 0] == np.arange(300)).all() and (distances[:, 0] == 0).all()
    assert np.allclose(distances, theirs_d, atol=1e-5)
    assert (np.sort(indices[:, 1:], axis=1) == np.sort(theirs_i[:, 1:], axis=1)).mean() > 0.99
    assert len(seen) >= 8 and seen == sorted(seen) and seen[-1] == 1.0
