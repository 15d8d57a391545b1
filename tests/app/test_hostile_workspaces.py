"""Workspaces fair under pressure (attack run 2026-12, D6, D8, W5, W6, W9, W21, W23, W24)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scembed_app.workspace import WorkspaceLimits, WorkspaceStore
from scembed_core.errors import WorkspaceNotFound, WorkspaceTooLarge

REPO = Path(__file__).resolve().parents[2]
MB = 2**20


def _dataset(seed: int, mb: float = 1.0) -> ad.AnnData:
    """Random (incompressible) counts of about ``mb`` MB on disk."""
    rng = np.random.default_rng(seed)
    n = int(mb * MB / 12)  # float64 values and int32 indices
    x = sp.csr_matrix(
        (rng.random(n), (rng.integers(0, 400, n), rng.integers(0, 5000, n))), shape=(400, 5000)
    )
    return ad.AnnData(x)


def _disk(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def test_the_total_budget_holds_on_every_write_and_open_work_is_never_evicted(tmp_path):
    store = WorkspaceStore(tmp_path, WorkspaceLimits(max_total_bytes=5 * MB))
    victim = store.create()
    victim.write_dataset(_dataset(0), {"name": "victim"})
    refused = 0
    for i in range(5):  # an attacker in other tabs keeps writing
        try:
            store.create().write_dataset(_dataset(i + 1), {"name": f"a{i}"})
        except WorkspaceTooLarge as exc:
            assert "space for saved analyses is full" in str(exc)
            refused += 1
    assert refused >= 2
    assert _disk(tmp_path) <= 5 * MB + 64 * 1024  # manifests and locks aside
    assert store.open(victim.id).read_dataset()[1]["name"] == "victim"


def test_closed_analyses_make_room_least_recently_used_first(tmp_path):
    clock = iter(range(1_000_000, 2_000_000, 10))
    store = WorkspaceStore(
        tmp_path, WorkspaceLimits(max_total_bytes=4 * MB), clock=lambda: next(clock)
    )
    old = [store.create() for _ in range(3)]
    for i, ws in enumerate(old):
        ws.write_dataset(_dataset(i), {"name": str(i)})
    store.opened.clear()  # their sessions ended (another process, or long ago)
    store.create().write_dataset(_dataset(9, 1.5), {"name": "new"})
    assert _disk(tmp_path) <= 4 * MB + 64 * 1024
    left = set(store.ids())
    assert old[0].id not in left and old[2].id in left  # the oldest went first


def test_a_visitor_quota_refuses_the_write_and_changes_nothing(tmp_path):
    store = WorkspaceStore(tmp_path, WorkspaceLimits(max_visitor_bytes=int(2.5 * MB)))
    store.create(visitor="v1").write_dataset(_dataset(0), {"name": "a"})
    store.create(visitor="v1").write_dataset(_dataset(1), {"name": "b"})
    before = sorted(store.ids())
    third = store.create(visitor="v1")
    with pytest.raises(WorkspaceTooLarge, match="each visitor may keep"):
        third.write_dataset(_dataset(2), {"name": "c"})
    assert not third.has_dataset()
    store.create(visitor="v2").write_dataset(_dataset(3), {"name": "other visitor"})
    assert set(before) <= set(store.ids())


@pytest.mark.parametrize(
    "damage",
    [
        {"updated": None},
        {"updated": "abc"},
        {"updated": float("inf")},
        {"items": []},
        {"items": {"dataset": {"file": "../../bad/two_cells.h5ad", "meta": {}}}},
        {"items": {"dataset": {"file": "/etc/passwd", "meta": {}}}},
        {"items": {"dataset": "x"}},
    ],
)
def test_a_malformed_meta_file_is_skipped_and_never_breaks_the_store(tmp_path, damage, caplog):
    store = WorkspaceStore(tmp_path)
    good = store.create()
    good.write_dataset(_dataset(0, 0.1), {"name": "good"})
    bad = store.create()
    path = bad.path / "meta.json"
    meta = json.loads(path.read_text())
    meta.update(damage)
    path.write_text(json.dumps(meta, allow_nan=True))
    report = store.cleanup(now=time.time() + 7200)
    assert bad.id not in report["removed"]  # skipped, not deleted blindly
    with pytest.raises(WorkspaceNotFound):
        store.open(bad.id)
    assert store.open(good.id).read_dataset()[1]["name"] == "good"
    store.create().write_dataset(_dataset(1, 0.1), {"name": "still works"})
    assert "malformed meta.json" in caplog.text


def test_temp_files_of_a_writer_killed_with_sigkill_go_at_the_next_sweep(tmp_path):
    store = WorkspaceStore(tmp_path)
    ws = store.create()
    script = (
        "import sys, time; from pathlib import Path\n"
        "from scembed_app.workspace.files import write_temp\n"
        "def slow(path):\n"
        "    path.write_bytes(b'x' * 100000); print('writing', flush=True); time.sleep(60)\n"
        f"write_temp(Path({str(ws.path)!r}), 'dataset.h5ad', slow)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    temps = [p for p in ws.path.iterdir() if p.name.startswith(".tmp-")]
    assert temps  # what kill -9 leaves behind
    store.cleanup()  # at once, not an hour later
    assert not [p for p in ws.path.iterdir() if p.name.startswith(".tmp-")]
