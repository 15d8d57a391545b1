"""Workspaces (issue 15): exact round-trips of a real projection, id validation before any
disk access, expiry, size budgets, crash safety and forks, all on real files."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scembed_app.workspace import (
    STALE_SECONDS,
    WorkspaceLimits,
    WorkspaceStore,
    default_root,
    is_valid_id,
    new_id,
)
from scembed_core.errors import (
    ScEmbedError,
    UnsafeInputError,
    WorkspaceExpired,
    WorkspaceNotFound,
    WorkspaceTooLarge,
)

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0


class Clock:
    """A settable clock for the store (stamps writes and decides expiry)."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def demo():
    """The demo query projected for real onto the built-in reference, with labels."""
    from scembed_core.cluster import build_knn_graph, cluster_graph
    from scembed_core.io import read_dataset
    from scembed_core.labels.assign import assign_labels
    from scembed_core.project import ev_transform, project
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

    reference = load_default_reference()
    adata = read_dataset(DEMO_QUERY_PATH)
    projection = project(adata, reference, ev=True)
    labels = assign_labels(
        projection.embedding, reference, neighbors=projection.neighbors, warn=False
    )
    labels.index = adata.obs_names
    clusters = cluster_graph(build_knn_graph(projection.space), 1.0)
    animated = ev_transform(
        projection.embedding,
        reference,
        neighbors=projection.neighbors,
        n_frames=4,
        max_sampled=300,
    )
    return {
        "adata": adata,
        "projection": projection,
        "animated": dataclasses.replace(projection, map_transform=animated),
        "labels": labels,
        "clusters": clusters,
    }


def same_array(a, b) -> None:
    assert isinstance(b, np.ndarray)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def same_sparse(a, b) -> None:
    assert type(a) is type(b) and a.shape == b.shape
    for name in ("data", "indices", "indptr"):
        same_array(getattr(a, name), getattr(b, name))


def same_projection(a, b) -> None:
    for name in ("embedding", "umap", "mapping_distance", "mapping_outlier", "analysis"):
        if getattr(a, name) is None:
            assert getattr(b, name) is None
        else:
            same_array(getattr(a, name), getattr(b, name))
    for x, y in zip(a.neighbors, b.neighbors, strict=True):
        same_array(x, y)
    assert a.timings == b.timings
    same_sparse(a.coverage.signal, b.coverage.signal)
    same_sparse(a.coverage.mapping.matrix, b.coverage.mapping.matrix)
    same_array(a.coverage.n_regions_per_cell, b.coverage.n_regions_per_cell)
    assert a.coverage.warnings == b.coverage.warnings
    assert a.coverage.mapping.renamed_chromosomes == b.coverage.mapping.renamed_chromosomes
    assert a.coverage.mapping.unknown_chromosomes == b.coverage.mapping.unknown_chromosomes
    assert a.coverage.summary() == b.coverage.summary()
    ma, mb = a.map_transform, b.map_transform
    assert ma.n_epochs == mb.n_epochs
    for name in ("coords", "initial", "frames", "frame_epochs", "sample"):
        if getattr(ma, name) is None:
            assert getattr(mb, name) is None
        else:
            same_array(getattr(ma, name), getattr(mb, name))


# -- ids --------------------------------------------------------------------------------
def test_new_ids_are_128_bit_hex_and_distinct():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_valid_id(i) and len(i) == 32 for i in ids)


GOOD = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "../" + GOOD[3:],
        GOOD.upper(),
        GOOD[:31],
        GOOD + "0",
        GOOD[:31] + "g",
        GOOD + "\n",
        "/" + GOOD[1:],
        GOOD[:16] + "/" + GOOD[17:],
        "",
        None,
        123,
        GOOD.encode(),
        [GOOD],
    ],
)
def test_malformed_ids_are_refused_before_any_disk_access(tmp_path, bad):
    root = tmp_path / "store" / "workspaces"
    store = WorkspaceStore(root)
    real = store.create()
    # Something a traversal would reach exists (and looks like a workspace).
    (tmp_path / "store" / "x").mkdir()
    (tmp_path / "store" / "x" / "meta.json").write_text(json.dumps({"id": "../x", "items": {}}))
    touched: list = []
    watching = True

    def hook(event, args):
        watched = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove"}
        paths = any(isinstance(a, (str, bytes, os.PathLike)) for a in args)
        if watching and event in watched and paths:
            touched.append((event, args))

    sys.addaudithook(hook)
    try:
        assert not is_valid_id(bad)
        with pytest.raises(WorkspaceNotFound) as error:
            store.open(bad)
        with pytest.raises(WorkspaceNotFound):
            store.fork(bad)
        with pytest.raises(WorkspaceNotFound):
            store.remove(bad)
    finally:
        watching = False
    assert touched == []
    assert "link" in str(error.value) and isinstance(error.value, ScEmbedError)
    # The same message as for a well-formed id that names nothing: no oracle for guessing.
    with pytest.raises(WorkspaceNotFound) as missing:
        store.open(new_id())
    assert str(missing.value) == str(error.value)
    assert store.open(real.id).id == real.id


def test_uppercase_of_a_real_id_does_not_open_it(tmp_path):
    store = WorkspaceStore(tmp_path)
    ws = store.create()
    with pytest.raises(WorkspaceNotFound):
        store.open(ws.id.upper())


def test_default_root(monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setenv("SCEMBED_WORKSPACES", str(tmp_path / "w"))
    assert default_root(hosted=True) == tmp_path / "w"
    assert default_root(hosted=False) == tmp_path / "w"
    monkeypatch.delenv("SCEMBED_WORKSPACES")
    assert default_root(hosted=True) == Path(tempfile.gettempdir()) / "scembed-workspaces"
    local = default_root(hosted=False)
    assert local.name == "workspaces" and "scembed" in local.parts
    assert local != default_root(hosted=True)


# -- round trips ------------------------------------------------------------------------
def test_projection_round_trip_is_bit_identical(tmp_path, demo):
    store = WorkspaceStore(tmp_path)
    ws = store.create()
    assert ws.read_projection() is None
    meta = {"reference_key": "default:abc", "seconds": 7.5, "n_cells": 1550}
    ws.write_projection(demo["projection"], meta=meta)
    # A fresh store, as after a server restart.
    restored, restored_meta = WorkspaceStore(tmp_path).open(ws.id).read_projection()
    assert restored_meta == meta
    same_projection(demo["projection"], restored)
    assert restored.map_transform.frames is None


def test_projection_with_animation_frames_round_trips(tmp_path, demo):
    ws = WorkspaceStore(tmp_path).create()
    ws.write_projection(demo["animated"], meta={})
    restored, _ = ws.read_projection()
    assert restored.map_transform.frames.shape[0] == 5
    same_projection(demo["animated"], restored)


def test_projection_file_loads_without_pickle(tmp_path, demo):
    ws = WorkspaceStore(tmp_path).create()
    ws.write_projection(demo["projection"], meta={})
    (npz,) = ws.path.glob("projection-*.npz")
    with np.load(npz, allow_pickle=False) as data:
        assert all(not data[name].dtype.hasobject for name in data.files)


def test_dataset_round_trip_leaves_the_callers_data_alone(tmp_path, demo):
    adata = demo["adata"]
    dtypes = adata.obs.dtypes.copy()
    ws = WorkspaceStore(tmp_path).create()
    assert not ws.has_dataset()
    with pytest.raises(WorkspaceNotFound):
        ws.read_dataset()
    meta = {"name": "demo_query.h5ad", "digest": "f" * 64, "liftover": None}
    ws.write_dataset(adata, meta)
    pd.testing.assert_series_equal(adata.obs.dtypes, dtypes)
    back, back_meta = WorkspaceStore(tmp_path).open(ws.id).read_dataset()
    assert back_meta == meta and ws.has_dataset()
    assert (back.X != adata.X).nnz == 0 and back.X.dtype == adata.X.dtype
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    pd.testing.assert_frame_equal(back.var, adata.var)
    assert list(back.obs_names) == list(adata.obs_names)


def test_results_round_trip(tmp_path, demo):
    labels = demo["labels"].copy()
    labels["category"] = pd.Categorical(labels["label"])
    labels.loc[labels.index[:3], "predicted"] = None
    ws = WorkspaceStore(tmp_path).create()
    assert ws.read_results() is None
    key = {"reference_key": "default:abc", "k": 15, "resolution": 0.5, "min_confidence": 0.5}
    ws.write_results(clusters=demo["clusters"], resolution=0.5, labels=labels, key=key)
    back = WorkspaceStore(tmp_path).open(ws.id).read_results()
    same_array(demo["clusters"], back["clusters"])
    assert back["resolution"] == 0.5 and back["key"] == key
    pd.testing.assert_frame_equal(back["labels"], labels, check_exact=True)
    assert back["labels"]["predicted"].iloc[0] is None
    ws.write_results(clusters=demo["clusters"], resolution=1.0, labels=None, key={})
    assert ws.read_results()["labels"] is None


def test_state_and_blobs(tmp_path):
    ws = WorkspaceStore(tmp_path).create()
    assert ws.read_state() == {}
    state = {
        "page": "annotate",
        "params": {"resolution": 0.5, "k": 15, "label_key": None},
        "reference": {"spec": "default", "name": "x", "fingerprint": "ab" * 8},
    }
    ws.write_state(state)
    assert WorkspaceStore(tmp_path).open(ws.id).read_state() == state
    assert ws.read_bytes("reference.zip") is None
    ws.write_bytes("reference.zip", b"PK\x03\x04 bundle")
    assert ws.read_bytes("reference.zip") == b"PK\x03\x04 bundle"
    for name in ("../reference.zip", "meta.json", "dataset.h5ad", "/etc/passwd", None):
        with pytest.raises(UnsafeInputError):
            ws.write_bytes(name, b"x")
        with pytest.raises(UnsafeInputError):
            ws.read_bytes(name)
    assert not (tmp_path / "etc").exists()


def test_a_new_dataset_drops_the_old_projection_and_results(tmp_path, demo):
    ws = WorkspaceStore(tmp_path).create()
    ws.write_dataset(demo["adata"], {"name": "a"})
    ws.write_projection(demo["projection"], meta={})
    ws.write_results(clusters=demo["clusters"], resolution=1.0, labels=None, key={})
    ws.write_state({"page": "project"})
    ws.write_dataset(demo["adata"][:10].copy(), {"name": "b"})
    again = WorkspaceStore(tmp_path).open(ws.id)
    assert again.read_projection() is None and again.read_results() is None
    assert again.read_state() == {"page": "project"}
    assert again.read_dataset()[1] == {"name": "b"}
    assert len(list(ws.path.glob("dataset-*"))) == 1  # the replaced file is gone


# -- expiry and budgets -----------------------------------------------------------------
def test_expiry_uses_the_last_write(tmp_path):
    clock = Clock()
    store = WorkspaceStore(tmp_path, WorkspaceLimits(max_age_seconds=7 * DAY), clock=clock)
    old, fresh = store.create(), store.create()
    clock.t += 3 * DAY
    fresh.write_state({"page": "data"})
    assert fresh.updated == clock.t and fresh.created == clock.t - 3 * DAY
    clock.t += 4 * DAY + 1
    with pytest.raises(WorkspaceExpired) as error:
        store.open(old.id)
    assert "7 days" in str(error.value)
    assert store.open(fresh.id).read_state() == {"page": "data"}
    assert store.open(old.id, now=clock.t - 2) is not None  # not yet expired at that time
    report = store.cleanup()
    assert report["removed"] == [old.id] and report["bytes_freed"] > 0
    assert store.ids() == [fresh.id]
    with pytest.raises(WorkspaceNotFound):
        store.open(old.id)
    later = store.cleanup(now=clock.t + 7 * DAY)
    assert later["removed"] == [fresh.id] and store.ids() == []


def test_total_budget_removes_the_least_recently_written_first(tmp_path):
    clock = Clock()
    store = WorkspaceStore(tmp_path, clock=clock)
    spaces = []
    for i in range(4):
        clock.t += 10
        ws = store.create()
        ws.write_bytes("reference.zip", bytes(10_000 + i))
        spaces.append(ws)
    clock.t += 10
    spaces[0].write_state({"touched": True})  # now the most recently written
    sizes = {ws.id: ws.size_bytes() for ws in spaces}
    total = sum(sizes.values())
    (tmp_path / "not-a-workspace").mkdir()  # never touched by cleanup
    tight = WorkspaceStore(
        tmp_path, WorkspaceLimits(max_total_bytes=total - sizes[spaces[1].id] - 1), clock=clock
    )
    report = tight.cleanup()
    assert report["removed"] == [spaces[1].id, spaces[2].id]
    assert report["bytes_freed"] == sizes[spaces[1].id] + sizes[spaces[2].id]
    assert tight.ids() == sorted([spaces[0].id, spaces[3].id])
    assert (tmp_path / "not-a-workspace").is_dir()
    assert store.cleanup()["removed"] == []  # the default budget is not exceeded


def test_per_workspace_budget_refuses_the_write_and_keeps_the_old_version(tmp_path):
    store = WorkspaceStore(tmp_path, WorkspaceLimits(max_bytes=50_000))
    ws = store.create()
    ws.write_bytes("reference.zip", b"old" * 1000)
    ws.write_state({"v": 1})
    before = sorted(p.name for p in ws.path.iterdir())
    with pytest.raises(WorkspaceTooLarge) as error:
        ws.write_bytes("reference.zip", bytes(60_000))
    assert "MB" in str(error.value)
    assert sorted(p.name for p in ws.path.iterdir()) == before
    again = store.open(ws.id)
    assert again.read_bytes("reference.zip") == b"old" * 1000
    ws.write_bytes("reference.zip", bytes(40_000))  # replacing counts the new size only
    assert store.open(ws.id).read_bytes("reference.zip") == bytes(40_000)


# -- crash safety -----------------------------------------------------------------------
CRASH = """
import os, sys
from scembed_app.workspace import WorkspaceStore
root, ws_id, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
real, calls = os.replace, []
def crashing(src, dst):
    calls.append(dst)
    if len(calls) == at:
        os._exit(17)  # the process dies here: no finally block, no cleanup
    return real(src, dst)
os.replace = crashing
WorkspaceStore(root).open(ws_id).write_state({"version": 2})
"""


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_mid_write_leaves_the_previous_version(tmp_path, crash_at):
    """Killed before the item is renamed into place (1) or before the manifest is (2)."""
    store = WorkspaceStore(tmp_path)
    ws = store.create()
    ws.write_state({"version": 1})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path), ws.id, str(crash_at)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 17, done.stderr
    leftovers = [p for p in ws.path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers  # the crash really left a half-finished write behind
    assert store.open(ws.id).read_state() == {"version": 1}
    # young temp files may be a write in progress, but not when their writer (its pid is in
    # the name) has died: those go at the next sweep, not an hour later
    report = store.cleanup()
    assert report["removed"] == [] and report["bytes_freed"] > 0
    report = store.cleanup(now=store.now() + STALE_SECONDS + 60)
    assert report["removed"] == []
    names = sorted(p.name for p in ws.path.iterdir())
    assert not [n for n in names if n.startswith(".tmp-")]
    assert len([n for n in names if n.startswith("state-")]) == 1
    assert store.open(ws.id).read_state() == {"version": 1}
    store.open(ws.id).write_state({"version": 3})
    assert store.open(ws.id).read_state() == {"version": 3}


def test_a_write_that_fails_midway_changes_nothing(tmp_path, demo):
    """h5py fails partway through writing a column it cannot store."""
    ws = WorkspaceStore(tmp_path).create()
    ws.write_dataset(demo["adata"], {"name": "good"})
    bad = demo["adata"][:20].copy()
    bad.obs["mixed"] = [object()] * bad.n_obs
    before = sorted(p.name for p in ws.path.iterdir())
    with pytest.raises(Exception):  # noqa: B017 - whatever anndata raises
        ws.write_dataset(bad, {"name": "bad"})
    assert sorted(p.name for p in ws.path.iterdir()) == before
    back, meta = WorkspaceStore(tmp_path).open(ws.id).read_dataset()
    assert meta == {"name": "good"} and back.n_obs == demo["adata"].n_obs


def test_a_corrupt_manifest_reads_as_not_found(tmp_path):
    store = WorkspaceStore(tmp_path)
    ws = store.create()
    (ws.path / "meta.json").write_text("{not json")
    with pytest.raises(WorkspaceNotFound):
        store.open(ws.id)


def test_concurrent_writers_lose_no_item(tmp_path):
    ws = WorkspaceStore(tmp_path).create()
    errors = []

    def write(i):
        try:
            handle = WorkspaceStore(tmp_path).open(ws.id)
            for j in range(10):
                if i % 2:
                    handle.write_state({"i": i, "j": j})
                else:
                    handle.write_bytes("reference.zip", bytes([i, j]))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    again = WorkspaceStore(tmp_path).open(ws.id)
    assert again.read_state()["j"] == 9 and again.read_bytes("reference.zip")[1] == 9
    files = sorted(p.name for p in ws.path.iterdir() if not p.name.startswith("."))
    assert len(files) == 3  # meta, one state, one blob: every replaced version deleted


def test_a_handle_reads_what_another_session_wrote_since(tmp_path):
    store = WorkspaceStore(tmp_path)
    writer = store.create()
    writer.write_state({"v": 1})
    reader = store.open(writer.id)
    writer.write_state({"v": 2})  # replaces (and deletes) the file the reader knew
    assert reader.read_state() == {"v": 2}
    store.remove(writer.id)
    with pytest.raises(WorkspaceNotFound):
        reader.read_state()


# -- forks ------------------------------------------------------------------------------
def test_fork_is_independent(tmp_path, demo):
    store = WorkspaceStore(tmp_path)
    ws = store.create()
    ws.write_dataset(demo["adata"], {"name": "demo"})
    ws.write_projection(demo["projection"], meta={"n_cells": 1550})
    ws.write_state({"page": "annotate", "resolution": 1.0})
    fork = store.fork(ws.id)
    assert fork.id != ws.id and is_valid_id(fork.id)
    assert sorted(store.ids()) == sorted([ws.id, fork.id])
    fork.write_state({"page": "annotate", "resolution": 0.5})
    fork.write_results(clusters=demo["clusters"], resolution=0.5, labels=None, key={})
    original = store.open(ws.id)
    assert original.read_state()["resolution"] == 1.0 and original.read_results() is None
    store.remove(ws.id)
    with pytest.raises(WorkspaceNotFound):
        store.open(ws.id)
    kept = WorkspaceStore(tmp_path).open(fork.id)
    assert kept.read_state()["resolution"] == 0.5
    assert kept.read_dataset()[1] == {"name": "demo"}
    same_projection(demo["projection"], kept.read_projection()[0])


def test_sparse_index_dtypes_are_kept(tmp_path, demo):
    """int64 indices that would fit int32 stay int64 (the constructor would narrow them)."""
    projection = demo["projection"]
    signal = projection.coverage.signal
    wide = sp.csr_matrix(signal.shape, dtype=signal.dtype)
    wide.data = signal.data
    wide.indices, wide.indptr = signal.indices.astype(np.int64), signal.indptr.astype(np.int64)
    coverage = dataclasses.replace(projection.coverage, signal=wide)
    ws = WorkspaceStore(tmp_path).create()
    ws.write_projection(dataclasses.replace(projection, coverage=coverage), meta={})
    back = ws.read_projection()[0].coverage.signal
    same_sparse(wide, back)


def test_the_owner_hash_is_kept_and_a_fork_belongs_to_the_forker(tmp_path):
    store = WorkspaceStore(tmp_path)
    mine, theirs = "a" * 64, "b" * 64
    workspace = store.create(owner=mine)
    workspace.write_state({"page": "pages/data.py"})
    reopened = store.open(workspace.id)  # a new session after a reload or a restart
    assert reopened.owned_by(mine)
    assert (
        not reopened.owned_by(theirs) and not reopened.owned_by("") and not reopened.owned_by(None)
    )
    meta = json.loads((workspace.path / "meta.json").read_text())
    assert meta["owner"] == mine
    fork = store.fork(workspace.id, owner=theirs)
    assert fork.owned_by(theirs) and not fork.owned_by(mine)
    assert not store.create().owned_by(mine), "a workspace made without an owner has none"


def test_remove_deletes_every_file_of_the_workspace_at_once(tmp_path):
    store = WorkspaceStore(tmp_path)
    workspace = store.create(owner="c" * 64)
    workspace.write_state({"page": "pages/data.py"})
    workspace.write_bytes("reference.zip", b"PK\x05\x06" + bytes(18))
    other = store.create()
    assert store.remove(workspace.id) > 0
    assert not workspace.path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.id]
    with pytest.raises(WorkspaceNotFound):
        store.open(workspace.id)
