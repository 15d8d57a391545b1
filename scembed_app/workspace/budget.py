"""Fair use of the workspace disk while the server runs: total budget, visitor quota, sweeps.

Every commit (:meth:`Workspace._commit`) asks :func:`make_room` first: the analyses of the
writing visitor must stay within ``limits.max_visitor_bytes``, and all analyses within
``limits.max_total_bytes``. To fit, the least recently used analyses that are not open
(not opened or written by this process in the last :data:`OPEN_SECONDS`) are removed,
oldest first; the writer's own analysis and open ones never are. When that is not enough
the write is refused (:class:`WorkspaceTooLarge`) and nothing changes. A damaged
``meta.json`` is skipped and logged, never a reason to fail. Temporary files of writers
that died (``kill -9``) are removed at the next sweep (their process is gone), others after
:data:`~.config.STALE_SECONDS`; :func:`maybe_cleanup` runs a sweep every
:data:`SWEEP_SECONDS` on writes.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scembed_core.errors import WorkspaceNotFound, WorkspaceTooLarge

from .config import is_valid_id
from .files import folder_bytes

if TYPE_CHECKING:
    from .store import WorkspaceStore

__all__ = [
    "OPEN_SECONDS",
    "SWEEP_SECONDS",
    "make_room",
    "mark_open",
    "maybe_cleanup",
    "meta_ok",
    "valid_entry_name",
    "writer_gone",
]

log = logging.getLogger("scembed_app.workspace")

#: An analysis opened or written by this process this recently counts as open.
OPEN_SECONDS = 1800.0
#: Writes run a cleanup sweep at most this often.
SWEEP_SECONDS = 600.0

_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Entry:
    id: str
    used: float
    size: int
    visitor: str | None


def mark_open(store: WorkspaceStore, ws_id: str) -> None:
    """Record that ``ws_id`` is in use by a session of this process now."""
    with _LOCK:
        store.opened[ws_id] = time.monotonic()


def _is_open(store: WorkspaceStore, ws_id: str) -> bool:
    seen = store.opened.get(ws_id)
    return seen is not None and time.monotonic() - seen < OPEN_SECONDS


def _entries(store: WorkspaceStore, skip: str) -> list[_Entry]:
    out = []
    for ws_id in store.ids():
        if ws_id == skip:
            continue
        try:
            meta = store.read_meta(ws_id)
        except WorkspaceNotFound:
            log.warning("workspace %s has a damaged meta.json; skipped", ws_id)
            continue
        visitor = meta.get("visitor") if isinstance(meta.get("visitor"), str) else None
        out.append(_Entry(ws_id, float(meta["updated"]), folder_bytes(store.root / ws_id), visitor))
    return out


def make_room(store: WorkspaceStore, ws_id: str, size_after: int, visitor: str | None) -> None:
    """Make the commit that leaves ``ws_id`` at ``size_after`` bytes fit every budget.

    Raises
    ------
    WorkspaceTooLarge
        The visitor's quota would be exceeded, or the total budget cannot be met without
        removing analyses that are open; nothing was removed for a refused quota.
    """
    limits = store.limits
    others = _entries(store, ws_id)
    quota = getattr(limits, "max_visitor_bytes", None)
    if visitor is not None and quota:
        mine = size_after + sum(e.size for e in others if e.visitor == visitor)
        if mine > quota:
            raise WorkspaceTooLarge(
                f"Your saved analyses would take {mine / 2**20:.0f} MB on this server, over "
                f"the {quota / 2**20:.0f} MB each visitor may keep; nothing was saved. Delete "
                "an analysis you no longer need, or run the command line locally."
            )
    total = size_after + sum(e.size for e in others)
    if total <= limits.max_total_bytes:
        return
    closed = sorted((e for e in others if not _is_open(store, e.id)), key=lambda e: e.used)
    victims = []
    for entry in closed:
        if total <= limits.max_total_bytes:
            break
        victims.append(entry)
        total -= entry.size
    if total > limits.max_total_bytes:
        raise WorkspaceTooLarge(
            f"The server's space for saved analyses is full ({limits.max_total_bytes / 2**20:.0f}"
            " MB, all in use by open analyses); nothing was saved. Try again later, or run the "
            "command line locally."
        )
    for entry in victims:
        store.remove(entry.id)
        log.info("workspace %s removed to make room (least recently used)", entry.id)


def maybe_cleanup(store: WorkspaceStore) -> None:
    """Run :meth:`WorkspaceStore.cleanup` if the last sweep is older than SWEEP_SECONDS."""
    with _LOCK:
        if time.monotonic() - store.last_sweep < SWEEP_SECONDS:
            return
        store.last_sweep = time.monotonic()
    store.cleanup()


def writer_gone(name: str) -> bool:
    """Whether a temporary file's name (``.tmp-<pid>-...``) names a process that has ended."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


def meta_ok(meta: dict) -> bool:
    """Whether a manifest has the types every reader relies on (timestamps, item files)."""
    stamps = (meta.get("created"), meta.get("updated"))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in stamps):
        return False
    if not all(math.isfinite(v) for v in stamps):
        return False
    items = meta.get("items")
    if not isinstance(items, dict):
        return False
    return all(
        isinstance(entry, dict) and valid_entry_name(entry.get("file")) and "meta" in entry
        for entry in items.values()
    )


def valid_entry_name(name: object) -> bool:
    """A workspace item's file name as meta.json records it: a plain name, no folders."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 200
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not name.startswith(".")
        and not is_valid_id(name)
    )
