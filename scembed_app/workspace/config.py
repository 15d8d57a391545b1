"""Workspace ids, where workspaces live, and their limits."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ID_PATTERN",
    "ALLOWED_BLOBS",
    "STALE_SECONDS",
    "new_id",
    "is_valid_id",
    "default_root",
    "WorkspaceLimits",
]

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
#: Byte blobs a workspace may hold (:meth:`Workspace.write_bytes`); no other name reaches disk.
ALLOWED_BLOBS = frozenset({"reference.zip"})
#: Temporary and orphaned files older than this are removed by :meth:`WorkspaceStore.cleanup`
#: (younger ones may belong to a write still in progress).
STALE_SECONDS = 3600.0


def new_id() -> str:
    """A new random workspace id: 32 lowercase hex digits (128 bits)."""
    return secrets.token_hex(16)


def is_valid_id(text: object) -> bool:
    """Whether ``text`` is a well-formed workspace id (checked before any disk access)."""
    return isinstance(text, str) and ID_PATTERN.fullmatch(text) is not None


def default_root(*, hosted: bool) -> Path:
    """Where workspaces live: ``$SCEMBED_WORKSPACES``, else a temp dir (hosted) or the cache."""
    configured = os.environ.get("SCEMBED_WORKSPACES")
    if configured:
        return Path(configured).expanduser()
    if hosted:
        return Path(tempfile.gettempdir()) / "scembed-workspaces"
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".cache" / "scembed" / "workspaces"
    return Path(platformdirs.user_cache_dir("scembed")) / "workspaces"


@dataclass(frozen=True)
class WorkspaceLimits:
    """Expiry and size budgets.

    Attributes
    ----------
    max_age_seconds
        A workspace not written for this long is expired (default 7 days).
    max_bytes
        Budget of one workspace; a write that would exceed it raises
        :class:`~scembed_core.errors.WorkspaceTooLarge` and changes nothing.
    max_total_bytes
        Budget of all workspaces, enforced on every write: the least recently used
        analyses that are not open are removed to make room, else the write is refused
        (see :mod:`.budget`); :meth:`WorkspaceStore.cleanup` also enforces it at start-up.
    max_visitor_bytes
        Budget of the analyses one visitor (``meta.json`` ``visitor``) keeps; a write over
        it is refused.
    """

    max_age_seconds: float = 7 * 86400
    max_bytes: int = 512 * 2**20
    max_total_bytes: int = 4 * 2**30
    max_visitor_bytes: int = 1 * 2**30
