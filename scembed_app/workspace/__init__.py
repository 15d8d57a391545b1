"""Workspaces: analyses that outlive a browser refresh or a server restart (issue 15).

A workspace is a folder on the server named by a random 128-bit id (the id in the app's
URL). It holds the dataset as read, the projection, the user's parameters (``state``),
clusters and labels, and optionally a trained reference bundle. See
:mod:`scembed_app.workspace.store` for the on-disk layout and the crash-safety rule.
"""

from .config import (
    ALLOWED_BLOBS,
    ID_PATTERN,
    STALE_SECONDS,
    WorkspaceLimits,
    default_root,
    is_valid_id,
    new_id,
)
from .store import Workspace, WorkspaceStore

__all__ = [
    "ALLOWED_BLOBS",
    "ID_PATTERN",
    "STALE_SECONDS",
    "Workspace",
    "WorkspaceLimits",
    "WorkspaceStore",
    "default_root",
    "is_valid_id",
    "new_id",
]
