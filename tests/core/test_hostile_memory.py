"""Every reader bounded (attack run 2026-12, rows 32-33, D2, D7): declared sizes first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import h5py
import pytest

from scembed_core.errors import MemoryBudgetError
from scembed_core.io import read_dataset

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scembed_core" / "data" / "demo_query.h5ad"


def _bomb(path: Path, group: str, shape=(200, 1_000_000)) -> Path:
    """The demo's first 200 cells plus a gzip dataset of zeros declaring 1.6 GB (~1 MB file)."""
    ad.read_h5ad(DEMO)[:200].copy().write_h5ad(path)
    with h5py.File(path, "r+") as f:
        if group == "X":
            del f["X"]
            d = f.create_dataset(
                "X", shape=shape, dtype="f8", chunks=(200, 4096), compression="gzip", fillvalue=0.0
            )
        else:
            parent = f.require_group(group)
            d = parent.create_dataset(
                "bomb",
                shape=shape,
                dtype="f8",
                chunks=(200, 4096),
                compression="gzip",
                fillvalue=0.0,
            )
        d.attrs["encoding-type"] = "array"
        d.attrs["encoding-version"] = "0.2.0"
    return path


@pytest.mark.parametrize("group", ["obsm", "uns", "layers", "obsp", "varm"])
def test_an_unused_compressed_bomb_is_never_read(tmp_path, group):
    shape = (200, 1_000_000) if group != "varm" else (10_000, 20_000)
    if group == "obsp":
        shape = (200, 200_000)
    path = _bomb(tmp_path / f"{group}.h5ad", group, shape)
    assert path.stat().st_size < 3e6
    adata = read_dataset(path, max_bytes=300 * 2**20)
    assert adata.n_obs == 200
    assert "bomb" not in adata.obsm and "bomb" not in adata.uns
    assert f"{group}/bomb" in adata.uns["scembed_read"]["not_read"]


def test_a_compressed_matrix_bomb_is_refused_by_its_declared_size(tmp_path):
    path = _bomb(tmp_path / "x.h5ad", "X", (200, 10_000))
    with h5py.File(path, "r+") as f:  # the demo's 10,000 peaks; X declares 200 x 10,000 x 8
        assert f["X"].shape == (200, 10_000)
    with pytest.raises(MemoryBudgetError, match="budget"):
        read_dataset(path, max_bytes=20 * 2**20)


def test_a_compression_bomb_is_read_under_a_500_mb_address_space_limit(tmp_path):
    """The real thing: a child process limited to 500 MB more than it has after imports."""
    bombs = [_bomb(tmp_path / f"{g}.h5ad", g) for g in ("obsm", "uns")]
    x_bomb = _bomb(tmp_path / "x.h5ad", "X", (200, 1_000_000))
    script = textwrap.dedent(
        f"""
        import resource, sys
        from scembed_core.errors import MemoryBudgetError
        from scembed_core.io import read_dataset
        import anndata, h5py, scipy.sparse  # noqa: F401  (imported before the limit)
        size_kb = next(int(l.split()[1]) for l in open('/proc/self/status')
                       if l.startswith('VmSize'))
        limit = size_kb * 1024 + 500 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for path in {[str(b) for b in bombs]!r}:
            a = read_dataset(path)
            print('read', a.n_obs, sorted(a.obsm), flush=True)
        try:
            read_dataset({str(x_bomb)!r})
            print('X bomb read')
        except MemoryBudgetError as exc:
            print('refused:', str(exc)[:60])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PYTHONPATH": str(REPO),
            "PATH": "/usr/bin:/bin",
            "NUMBA_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[:2] == ["read 200 []", "read 200 []"], done.stdout
    assert lines[2].startswith("refused: Reading x.h5ad needs about"), done.stdout


def test_the_budget_reads_cgroup_v1_and_v2_limits(tmp_path):
    from scembed_core.io import container_memory_available

    proc = tmp_path / "cgroup"
    proc.write_text("0::/box\n4:memory:/box\n")
    v2 = tmp_path / "box"
    v2.mkdir()
    (v2 / "memory.max").write_text("2700000000\n")
    (v2 / "memory.current").write_text("700000000\n")
    assert container_memory_available(tmp_path, proc) == 2_000_000_000
    v1 = tmp_path / "memory" / "box"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("1500000000\n")
    (v1 / "memory.usage_in_bytes").write_text("1000000000\n")
    assert container_memory_available(tmp_path, proc) == 500_000_000
    (v2 / "memory.max").write_text("max\n")
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert container_memory_available(tmp_path, proc) is None


def test_the_budget_honours_the_memory_override(monkeypatch):
    from scembed_core.io import default_memory_budget

    monkeypatch.setenv("SCEMBED_MEMORY_BUDGET_MB", "300")
    assert default_memory_budget() == 300 * 2**20
