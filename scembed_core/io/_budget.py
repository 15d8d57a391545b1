"""The memory budget: declared sizes are checked before any matrix is allocated."""

from __future__ import annotations

import os

from ..errors import MemoryBudgetError


def default_memory_budget() -> int:
    """Half of the currently available physical memory, in bytes (4 GiB if unknown)."""
    try:
        pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3
    return pages * page_size // 2 if pages > 0 and page_size > 0 else 4 * 1024**3


def estimate_dataset_bytes(n_obs: int, n_vars: int, nnz: int, *, dense_bytes: int = 0) -> int:
    """Generous estimate of the peak memory needed to read and normalise a dataset.

    Parameters
    ----------
    n_obs, n_vars
        Number of cells and peaks.
    nnz
        Number of stored (non-zero) counts.
    dense_bytes
        Size of a dense matrix that must be held in memory while reading, if any.

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
