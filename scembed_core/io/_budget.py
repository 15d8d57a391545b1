"""The memory budget: declared sizes are checked before anything is allocated.

The budget is half of the memory this process can still use: the host's free memory, the
container's cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) minus what the
container already uses, and the process's address-space limit (``RLIMIT_AS``), whichever is
least. ``SCEMBED_MEMORY_BUDGET_MB`` sets it outright (an operator's override).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..errors import MemoryBudgetError

_UNKNOWN = 4 * 1024**3
_UNLIMITED = 1 << 60  # cgroup v1 writes 2^63 rounded down to a page for "no limit"

#: Where cgroup file systems are mounted (a parameter of the functions, for tests).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < _UNLIMITED else None


def _cgroup_paths(proc_cgroup: Path) -> tuple[str, str]:
    """Return the process's cgroup v2 path and v1 memory path (``/`` if unknown)."""
    v2 = v1 = "/"
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2] or "/"
        elif "memory" in parts[1].split(","):
            v1 = parts[2] or "/"
    return v2, v1


def container_memory_available(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """Return the bytes the container's cgroup still allows (None if it has no limit).

    Parameters
    ----------
    root
        Where the cgroup file systems are mounted.
    proc_cgroup
        The process's cgroup membership file.

    Returns
    -------
    int or None
        The least headroom over every limited cgroup found (v2 ``memory.max`` minus
        ``memory.current``, v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``),
        looking both at the process's own cgroup and at the mount's root (a container sees
        its own cgroup there); ``None`` when no limit is set.
    """
    v2, v1 = _cgroup_paths(proc_cgroup)
    candidates = [
        (root / v2.lstrip("/"), "memory.max", "memory.current"),
        (root, "memory.max", "memory.current"),
        (root / "memory" / v1.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes"),
        (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
    ]
    best: int | None = None
    for folder, limit_name, usage_name in candidates:
        limit = _read_int(folder / limit_name)
        if limit is None:
            continue
        used = _read_int(folder / usage_name) or 0
        headroom = max(limit - used, 0)
        best = headroom if best is None else min(best, headroom)
    return best


def _address_space_available() -> int | None:
    """Return the bytes left under ``RLIMIT_AS`` (None if unlimited or unknown)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft in (resource.RLIM_INFINITY, -1) or soft <= 0:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        size_kb = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmSize"))
    except (OSError, StopIteration, ValueError, IndexError):
        size_kb = 0
    return max(soft - size_kb * 1024, 0)


def default_memory_budget() -> int:
    """Return half of the memory this process can still use, in bytes (4 GiB if unknown).

    Returns
    -------
    int
        ``SCEMBED_MEMORY_BUDGET_MB`` when set; else half of the least of the host's free
        memory, the cgroup headroom (:func:`container_memory_available`) and the headroom
        under ``RLIMIT_AS``.
    """
    override = os.environ.get("SCEMBED_MEMORY_BUDGET_MB", "").strip()
    if override:
        try:
            return max(int(float(override) * 1024**2), 0)
        except ValueError:
            pass
    available: list[int] = []
    try:
        pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            available.append(pages * page_size)
    except (ValueError, OSError, AttributeError):
        pass
    for headroom in (container_memory_available(), _address_space_available()):
        if headroom is not None:
            available.append(headroom)
    return min(available) // 2 if available else _UNKNOWN


def estimate_dataset_bytes(n_obs: int, n_vars: int, nnz: int, *, dense_bytes: int = 0) -> int:
    """Estimate generously the peak memory needed to read and normalise a dataset.

    Parameters
    ----------
    n_obs, n_vars
        Number of cells and peaks.
    nnz
        Number of stored (non-zero) counts.
    dense_bytes
        Size of a dense matrix (or other elements) that must be held while reading, if any.

    Returns
    -------
    int
        Bytes: 24 per non-zero (the file's values and indices plus the binary CSR copy),
        200 per cell and per peak (names, coordinates, metadata) plus ``dense_bytes``.
    """
    return int(nnz) * 24 + (int(n_obs) + int(n_vars)) * 200 + int(dense_bytes)


def check_memory_budget(
    n_obs: int,
    n_vars: int,
    nnz: int,
    max_bytes: int | None = None,
    *,
    what: str = "this dataset",
    dense_bytes: int = 0,
) -> int:
    """Raise :class:`MemoryBudgetError` if a dataset of this size would exceed the budget.

    Returns the estimate in bytes. ``max_bytes=None`` means :func:`default_memory_budget`.
    """
    budget = default_memory_budget() if max_bytes is None else int(max_bytes)
    need = estimate_dataset_bytes(n_obs, n_vars, nnz, dense_bytes=dense_bytes)
    if need > budget:
        raise MemoryBudgetError(
            f"Reading {what} needs about {need / 1e9:,.1f} GB of memory ({int(n_obs):,} cells x "
            f"{int(n_vars):,} peaks, {int(nnz):,} non-zero counts) but the budget is "
            f"{budget / 1e9:,.1f} GB. Subset the data to fewer cells or peaks before uploading, "
            "use a machine with more memory, or raise max_bytes."
        )
    return need


def declared_bytes(node: Any) -> int:
    """Sum the bytes the HDF5 datasets under ``node`` declare (shape x item size).

    Parameters
    ----------
    node
        An ``h5py.Group`` or ``h5py.Dataset``. Compression does not hide anything: the
        declared shape is what reading allocates.

    Returns
    -------
    int
        The sum over every dataset (variable-length strings count their pointer size).
    """
    import h5py

    if isinstance(node, h5py.Dataset):
        shape = node.shape or ()
        return math.prod(int(v) for v in shape) * int(node.dtype.itemsize)
    total = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += declared_bytes(obj)

    node.visititems(visit)
    return total


def check_h5_budget(path: str | Path, max_bytes: int | None = None, *, what: str) -> int:
    """Refuse an HDF5 file whose datasets, all together, declare more than the budget.

    Parameters
    ----------
    path
        The file (e.g. a bundle's ``cells.h5ad``, read whole).
    max_bytes
        Budget in bytes (default :func:`default_memory_budget`).
    what
        How the message names the file.

    Returns
    -------
    int
        The declared bytes.

    Raises
    ------
    MemoryBudgetError
        The declared total exceeds the budget (2x it, for the copies reading makes).
    """
    import h5py

    with h5py.File(path, "r") as handle:
        need = 2 * declared_bytes(handle)
    budget = default_memory_budget() if max_bytes is None else int(max_bytes)
    if need > budget:
        raise MemoryBudgetError(
            f"Reading {what} needs about {need / 1e9:,.1f} GB of memory (declared by the "
            f"file; it may be compressed far smaller) but the budget is {budget / 1e9:,.1f} GB."
        )
    return need
