"""Workspaces on disk: one folder per analysis, named by a random 128-bit id.

Layout of ``<root>/<id>/``: ``meta.json`` (the manifest: timestamps, and for each item the
file that holds it now and that item's metadata) and one immutable file per item version
(``dataset-<token>.h5ad``, ``projection-<token>.npz``, ``results-<token>.npz``,
``state-<token>.json``, ``reference.zip-<token>``). A write goes to a temporary name, is
fsynced and renamed into place with :func:`os.replace`; only then does a new ``meta.json``
(written the same way) point at it, and the file it replaces is deleted. ``meta.json`` is
the commit point: after a crash at any moment the workspace reads as the old or the new
version, never a mix, and files are never changed in place, so a fork may hard-link them.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scembed_core.errors import (
    UnsafeInputError,
    WorkspaceError,
    WorkspaceExpired,
    WorkspaceNotFound,
    WorkspaceTooLarge,
)

from . import budget
from .codec import (
    frame_arrays,
    frame_from_arrays,
    json_plain,
    projection_arrays,
    projection_from_arrays,
)
from .config import (
    ALLOWED_BLOBS,
    STALE_SECONDS,
    WorkspaceLimits,
    is_valid_id,
    new_id,
)
from .files import (
    LOCK,
    TEMP_PREFIX,
    bytes_writer,
    folder_bytes,
    fsync_dir,
    json_bytes,
    locked,
    npz_bytes,
    read_npz,
    write_temp,
)

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

    from scembed_core.project import Projection

__all__ = ["WorkspaceStore", "Workspace"]  # ids, root and limits: .config

META = "meta.json"
FORMAT_VERSION = 1
NOT_FOUND = (
    "No analysis exists at this link: it was never created, was removed, or the link is "
    "incomplete. Start a new analysis."
)


class Workspace:
    """One analysis on disk; obtained from :class:`WorkspaceStore`, never built by hand."""

    def __init__(self, store: WorkspaceStore, ws_id: str, meta: dict) -> None:
        self.store = store
        self.id = ws_id
        self.path = store.root / ws_id
        self._meta = meta

    def __repr__(self) -> str:
        return f"Workspace({self.id!r}, items={sorted(self._meta['items'])})"

    @property
    def created(self) -> float:
        """Creation time (seconds since the epoch)."""
        return float(self._meta["created"])

    @property
    def updated(self) -> float:
        """Time of the last write (seconds since the epoch)."""
        return float(self._meta["updated"])

    def owned_by(self, token: str | None) -> bool:
        """Whether ``token`` (the sha256 of a browser's owner secret) created this workspace.

        Only the hash is stored (``meta["owner"]``); the secret stays in the browser that
        created the workspace (see :mod:`scembed_app.owner`), never in a link.
        """
        stored = self._meta.get("owner")
        if not isinstance(stored, str) or not isinstance(token, str) or not token:
            return False
        return hmac.compare_digest(stored.encode(), token.encode())

    # -- committing -------------------------------------------------------------------
    def _commit(self, files: dict[str, tuple[str, Callable[[Path], None], Any]], drop=()) -> None:
        """Write new item versions, then the manifest; delete what they replace.

        ``files`` maps an item name to ``(suffix, writer, item_meta)``; ``drop`` lists items
        to remove in the same commit.
        """
        written: dict[str, Path] = {}
        try:
            for item, (suffix, writer, _) in files.items():
                temp = write_temp(self.path, item + suffix, writer)
                final = self.path / f"{item}-{secrets.token_hex(8)}{suffix}"
                written[item] = temp
                os.replace(temp, final)
                written[item] = final
            with locked(self.path):
                meta = self.store.read_meta(self.id)
                items = dict(meta["items"])
                replaced = [items.pop(name)["file"] for name in drop if name in items]
                kept = sum(
                    (self.path / entry["file"]).stat().st_size
                    for name, entry in items.items()
                    if name not in files
                )
                new = sum(path.stat().st_size for path in written.values())
                if kept + new > self.store.limits.max_bytes:
                    raise WorkspaceTooLarge(
                        f"This analysis would take {(kept + new) / 2**20:.1f} MB on the "
                        f"server, over the {self.store.limits.max_bytes / 2**20:.0f} MB "
                        "allowed for one analysis; nothing was saved. Use a smaller dataset "
                        "or run the command line locally."
                    )
                budget.make_room(self.store, self.id, kept + new, meta.get("visitor"))
                for item, (_, _, item_meta) in files.items():
                    if item in items:
                        replaced.append(items[item]["file"])
                    items[item] = {"file": written[item].name, "meta": item_meta}
                meta = {**meta, "items": items, "updated": self.store.now()}
                self.store.write_meta(self.path, meta)
                written.clear()
        finally:
            for path in written.values():  # not committed: the old version stays current
                path.unlink(missing_ok=True)
        self._meta = meta
        for name in replaced:
            (self.path / name).unlink(missing_ok=True)
        budget.mark_open(self.store, self.id)
        budget.maybe_cleanup(self.store)

    def _read(self, item: str, reader: Callable[[Path, Any], Any]) -> Any:
        """``reader(path, item_meta)`` of the item's current file, or None if absent.

        Another session may have replaced (and deleted) the file since this handle read
        the manifest: the manifest is then re-read once and the newer version returned.
        """
        for attempt in range(2):
            entry = self._meta["items"].get(item)
            if entry is None:
                return None
            try:
                return reader(self.path / entry["file"], entry["meta"])
            except FileNotFoundError:
                if attempt:
                    raise WorkspaceNotFound(NOT_FOUND) from None
                self.refresh()  # raises WorkspaceNotFound if the workspace was removed
        return None  # pragma: no cover - the loop returns or raises

    def refresh(self) -> None:
        """Re-read the manifest (another session may have written since)."""
        self._meta = self.store.read_meta(self.id)

    # -- items ------------------------------------------------------------------------
    def write_dataset(self, adata: ad.AnnData, meta: dict) -> None:
        """Store the dataset as read (``.h5ad``) with its metadata (name, digest, ...).

        A new dataset invalidates what was computed from the old one: the projection and
        results are dropped in the same commit.
        """
        self._commit(
            {"dataset": (".h5ad", _h5ad_writer(adata), dict(meta))}, drop=("projection", "results")
        )

    def read_dataset(self) -> tuple[ad.AnnData, dict]:
        """The stored dataset and its metadata; :class:`WorkspaceNotFound` if there is none."""
        import anndata as ad

        found = self._read("dataset", lambda path, meta: (ad.read_h5ad(path), dict(meta)))
        if found is None:
            raise WorkspaceNotFound("This analysis has no dataset stored.")
        return found

    def has_dataset(self) -> bool:
        """Whether a dataset is stored."""
        return "dataset" in self._meta["items"]

    def write_projection(self, projection: Projection, *, meta: dict) -> None:
        """Store a projection (arrays in ``.npz``, the rest as JSON inside it)."""
        arrays, doc = projection_arrays(projection)
        arrays["__doc__"] = np.asarray(json_bytes(doc).decode())
        data = npz_bytes(arrays)
        self._commit({"projection": (".npz", bytes_writer(data), dict(meta))})

    def read_projection(self) -> tuple[Projection, dict] | None:
        """The stored projection (equal to the one written) and its metadata, or None."""
        found = self._read("projection", lambda path, meta: (read_npz(path), dict(meta)))
        if found is None:
            return None
        arrays, meta = found
        doc = json.loads(str(arrays.pop("__doc__")))
        return projection_from_arrays(arrays, doc), meta

    def write_state(self, state: dict) -> None:
        """Store the page, the user's parameters and the reference identity (JSON only)."""
        data = json_bytes(state)
        self._commit({"state": (".json", bytes_writer(data), None)})

    def read_state(self) -> dict:
        """The stored state, ``{}`` if none was written."""
        found = self._read("state", lambda path, meta: json.loads(path.read_bytes()))
        return {} if found is None else found

    def write_results(
        self,
        *,
        clusters: np.ndarray,
        resolution: float,
        labels: pd.DataFrame | None,
        key: dict,
    ) -> None:
        """Store clusters and labels with ``key``, the settings they were computed under."""
        arrays = {"clusters": np.asarray(clusters)}
        doc: dict[str, Any] = {"resolution": float(resolution), "labels": None}
        if labels is not None:
            label_arrays, doc["labels"] = frame_arrays(labels, "labels")
            arrays.update(label_arrays)
        if arrays["clusters"].dtype.hasobject:
            raise WorkspaceError("Clusters must be a numeric array.")
        arrays["__doc__"] = np.asarray(json_bytes(doc).decode())
        data = npz_bytes(arrays)
        self._commit({"results": (".npz", bytes_writer(data), json_plain(key))})

    def read_results(self) -> dict | None:
        """``{"clusters", "resolution", "labels", "key"}`` as written, or None."""
        found = self._read("results", lambda path, meta: (read_npz(path), meta))
        if found is None:
            return None
        arrays, key = found
        doc = json.loads(str(arrays.pop("__doc__")))
        labels = None
        if doc["labels"] is not None:
            labels = frame_from_arrays(arrays, doc["labels"], "labels")
        return {
            "clusters": arrays["clusters"],
            "resolution": doc["resolution"],
            "labels": labels,
            "key": key,
        }

    def write_bytes(self, name: str, data: bytes) -> None:
        """Store a blob under a name from :data:`ALLOWED_BLOBS` (e.g. a trained reference)."""
        self._commit({_blob(name): ("", bytes_writer(bytes(data)), {"bytes": len(data)})})

    def read_bytes(self, name: str) -> bytes | None:
        """A stored blob, or None."""
        return self._read(_blob(name), lambda path, meta: path.read_bytes())

    def size_bytes(self) -> int:
        """Bytes on disk of every file in the workspace folder."""
        return folder_bytes(self.path)


def _blob(name: str) -> str:
    if not isinstance(name, str) or name not in ALLOWED_BLOBS:
        raise UnsafeInputError(
            f"Blob name {name!r} is not one a workspace stores (allowed: {sorted(ALLOWED_BLOBS)})."
        )
    return name


class WorkspaceStore:
    """All workspaces under ``root``; ids are validated before anything touches the disk.

    ``clock`` (default :func:`time.time`) stamps writes and decides expiry; tests pass
    their own.
    """

    def __init__(
        self,
        root: Path,
        limits: WorkspaceLimits = WorkspaceLimits(),  # noqa: B008 - frozen, immutable
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.limits = limits
        self.clock = clock
        self.opened: dict[str, float] = {}  # id -> monotonic time a session last used it
        self.last_sweep = time.monotonic()

    def now(self) -> float:
        """Current time from the store's clock."""
        return float(self.clock())

    # -- manifest ---------------------------------------------------------------------
    def read_meta(self, ws_id: str) -> dict:
        """The manifest of a workspace (id already validated)."""
        try:
            meta = json.loads((self.root / ws_id / META).read_bytes())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
            raise WorkspaceNotFound(NOT_FOUND) from None
        if not isinstance(meta, dict) or meta.get("id") != ws_id or not budget.meta_ok(meta):
            budget.log.warning("workspace %s: malformed meta.json, treated as absent", ws_id)
            raise WorkspaceNotFound(NOT_FOUND)
        return meta

    def write_meta(self, folder: Path, meta: dict) -> None:
        """Atomically replace a workspace's manifest."""
        temp = write_temp(folder, META, bytes_writer(json_bytes(meta)))
        os.replace(temp, folder / META)
        fsync_dir(folder)

    # -- workspaces -------------------------------------------------------------------
    def create(self, *, visitor: str | None = None, owner: str | None = None) -> Workspace:
        """A new, empty workspace under a fresh random id.

        ``visitor`` is for the quota; ``owner`` (a hash of the creating browser's secret) is
        kept in the manifest so that browser keeps editing after a reload or a server
        restart.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            ws_id = new_id()
            folder = self.root / ws_id
            try:
                folder.mkdir(mode=0o700)
                break
            except FileExistsError:  # pragma: no cover - 2**-128
                continue
        now = self.now()
        meta = {"format": FORMAT_VERSION, "id": ws_id, "created": now, "updated": now, "items": {}}
        if visitor is not None:
            meta["visitor"] = str(visitor)[:64]
        if owner:
            meta["owner"] = str(owner)
        self.write_meta(folder, meta)
        budget.mark_open(self, ws_id)
        return Workspace(self, ws_id, meta)

    def open(self, ws_id: str, *, now: float | None = None) -> Workspace:
        """The workspace ``ws_id``.

        Raises
        ------
        WorkspaceNotFound
            ``ws_id`` is not a well-formed id (checked first, without touching the disk)
            or no such workspace exists.
        WorkspaceExpired
            It was last written more than ``limits.max_age_seconds`` ago.
        """
        if not is_valid_id(ws_id):
            raise WorkspaceNotFound(NOT_FOUND)
        meta = self.read_meta(ws_id)
        now = self.now() if now is None else now
        if now - float(meta["updated"]) > self.limits.max_age_seconds:
            days = self.limits.max_age_seconds / 86400
            raise WorkspaceExpired(
                f"This analysis has expired: analyses are kept for {days:g} days after their "
                "last change. Start a new analysis (or re-run it from its run.json)."
            )
        budget.mark_open(self, ws_id)
        return Workspace(self, ws_id, meta)

    def fork(self, ws_id: str, *, owner: str | None = None) -> Workspace:
        """A copy of workspace ``ws_id`` under a new id (files hard-linked when possible).

        The copy belongs to ``owner`` (the forking browser), not to the source's owner.
        """
        source = self.open(ws_id)
        target = self.create(owner=owner)
        items = {}
        for item, entry in source._meta["items"].items():
            src, dst = source.path / entry["file"], target.path / entry["file"]
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            items[item] = entry
        meta = {**target._meta, "items": items, "forked_from": source.id}
        with locked(target.path):
            self.write_meta(target.path, meta)
        target._meta = meta
        return target

    def ids(self) -> list[str]:
        """Ids of the workspaces under ``root`` (expired ones included until cleanup)."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.root)
            if is_valid_id(entry.name) and os.path.isfile(os.path.join(entry.path, META))
        )

    def remove(self, ws_id: str) -> int:
        """Delete a workspace; returns the bytes freed (0 if it did not exist)."""
        if not is_valid_id(ws_id):
            raise WorkspaceNotFound(NOT_FOUND)
        folder = self.root / ws_id
        size = folder_bytes(folder)
        trash = self.root / f"{TEMP_PREFIX}trash-{ws_id}-{secrets.token_hex(4)}"
        try:
            os.replace(folder, trash)  # one atomic step: readers see it gone, not half gone
        except FileNotFoundError:
            return 0
        shutil.rmtree(trash, ignore_errors=True)
        return size

    def cleanup(self, *, now: float | None = None) -> dict:
        """Remove expired workspaces, then the least recently written until under budget.

        Also removes temporary and orphaned files (and folders without a manifest) older
        than :data:`STALE_SECONDS`. Returns ``{"removed": [ids], "bytes_freed": int}``.
        """
        now = self.now() if now is None else now
        removed: list[str] = []
        freed = 0
        if not self.root.is_dir():
            return {"removed": removed, "bytes_freed": freed}
        alive: list[tuple[float, str, int]] = []
        for entry in list(os.scandir(self.root)):
            try:
                stale = _age(entry.path, now) > STALE_SECONDS or budget.writer_gone(entry.name)
                freed += self._clean_one(entry, stale, now, removed, alive)
            except Exception:  # one damaged workspace never breaks the sweep for all
                budget.log.exception("workspace cleanup skipped %s", entry.name)
        total = sum(size for _, _, size in alive)
        for _, ws_id, size in sorted(alive):
            if total <= self.limits.max_total_bytes:
                break
            freed += self.remove(ws_id)
            removed.append(ws_id)
            total -= size
        return {"removed": removed, "bytes_freed": freed}

    def _clean_one(
        self, entry: os.DirEntry, stale: bool, now: float, removed: list, alive: list
    ) -> int:
        """Clean one entry of the root (see :meth:`cleanup`); returns the bytes freed."""
        if entry.name.startswith(TEMP_PREFIX) and stale:
            freed = folder_bytes(Path(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
            return freed
        if not is_valid_id(entry.name) or not entry.is_dir(follow_symlinks=False):
            return 0  # never touch what a store did not create
        try:
            meta = self.read_meta(entry.name)
        except WorkspaceNotFound:
            if stale and not os.path.lexists(os.path.join(entry.path, META)):
                removed.append(entry.name)  # a create that never finished
                return self.remove(entry.name)
            return 0  # a damaged manifest: skipped (and logged), never removed blindly
        if now - float(meta["updated"]) > self.limits.max_age_seconds:
            removed.append(entry.name)
            return self.remove(entry.name)
        alive.append((float(meta["updated"]), entry.name, folder_bytes(Path(entry.path))))
        return self._sweep(Path(entry.path), meta, now)

    def _sweep(self, folder: Path, meta: dict, now: float) -> int:
        """Delete stale temp files and item files the manifest no longer points at."""
        keep = {META, LOCK} | {entry["file"] for entry in meta["items"].values()}
        freed = 0
        for entry in list(os.scandir(folder)):
            gone = entry.name.startswith(TEMP_PREFIX) and budget.writer_gone(entry.name)
            if entry.name in keep or (_age(entry.path, now) <= STALE_SECONDS and not gone):
                continue
            with contextlib.suppress(FileNotFoundError):
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
        return freed


def _age(path: str, now: float) -> float:
    try:
        return now - os.stat(path, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def _h5ad_writer(adata: ad.AnnData) -> Callable[[Path], None]:
    # Strings stay strings: anndata's default would turn them into categoricals *in place*.
    return lambda path: adata.write_h5ad(path, convert_strings_to_categoricals=False)
