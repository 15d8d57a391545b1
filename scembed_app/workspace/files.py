"""Atomic file writes, the manifest lock and small (de)serialisers for workspaces."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .codec import json_plain

__all__ = [
    "TEMP_PREFIX",
    "LOCK",
    "fsync_dir",
    "locked",
    "write_temp",
    "bytes_writer",
    "json_bytes",
    "npz_bytes",
    "read_npz",
    "folder_bytes",
]

TEMP_PREFIX = ".tmp-"
LOCK = ".lock"


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on a workspace's manifest (between threads and processes)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: single-process servers only
        yield
        return
    with open(folder / LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_temp(folder: Path, stem: str, writer: Callable[[Path], None]) -> Path:
    """Write through ``writer`` to a temporary file in ``folder`` and fsync it."""
    # the writer's pid in the name: a sweep removes files of writers that died (kill -9)
    temp = folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}-{stem}"
    try:
        writer(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def bytes_writer(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def json_bytes(doc: Any) -> bytes:
    return json.dumps(json_plain(doc), indent=1, sort_keys=True).encode()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def folder_bytes(folder: Path) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
