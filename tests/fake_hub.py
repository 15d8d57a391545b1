"""A Hugging Face hub on 127.0.0.1 that speaks enough of the protocol for snapshot_download.

It serves one model repository from a dict of files, at one commit, with the endpoints and
headers huggingface_hub 2.4 uses to download a snapshot:

- ``GET /api/models/OWNER/NAME/revision/REV``: the commit a branch or tag points to (``sha``);
- ``GET /api/models/OWNER/NAME/tree/COMMIT``: the file listing (size, git blob id, LFS sha256);
- ``HEAD|GET /OWNER/NAME/resolve/REV/FILE``: the file, with ``X-Repo-Commit``, ``ETag`` (git
  blob sha1) and, for LFS files, ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``.

Files are served directly (no redirect to a CDN host) and without Xet headers, so the client
takes its plain HTTP download path. Unknown paths get 404 with the hub's ``X-Error-Code``.
Every request is recorded in :attr:`FakeHub.requests`. ``delays`` holds up the download
(GET) of chosen files as a slow connection would: ``{name: (seconds before the response
headers, seconds between the headers and the body)}``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = {".safetensors", ".pt", ".bin"}


def tree_entry(name: str, data: bytes) -> dict:
    """The hub's tree listing entry of one file (git blob sha1; sha256 for LFS files)."""
    entry = {
        "type": "file",
        "path": name,
        "size": len(data),
        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
    }
    if PurePosixPath(name).suffix in LFS_SUFFIXES:
        entry["lfs"] = {
            "oid": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "pointerSize": 134,
        }
    return entry


class FakeHub(ThreadingHTTPServer):
    """The hub for one repository; use as a context manager (serves on a thread)."""

    daemon_threads = True

    def __init__(
        self,
        repo_id: str,
        commit: str,
        files: dict[str, bytes],
        *,
        refs: tuple[str, ...] = ("main",),
        delays: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repo_id, self.commit, self.files, self.refs = repo_id, commit, files, set(refs)
        self.delays = dict(delays or {})
        self.requests: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The value for ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def knows(self, revision: str) -> bool:
        return revision in self.refs or revision == self.commit

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, before_body: float = 0.0
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.flush()
            time.sleep(before_body)
            self.wfile.write(body)

    def _json(self, obj: object) -> None:
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        hub = self.server
        path = unquote(urlsplit(self.path).path)
        hub.requests.append((self.command, path))
        api = f"/api/models/{hub.repo_id}/"
        resolve = f"/{hub.repo_id}/resolve/"
        missing_revision = {"X-Error-Code": "RevisionNotFound"}
        if path.startswith(api + "revision/"):
            revision = path.removeprefix(api + "revision/")
            if not hub.knows(revision):
                return self._send(404, headers=missing_revision)
            siblings = [{"rfilename": name} for name in sorted(hub.files)]
            return self._json({"id": hub.repo_id, "sha": hub.commit, "siblings": siblings})
        if path.startswith(api + "tree/"):
            if not hub.knows(path.removeprefix(api + "tree/")):
                return self._send(404, headers=missing_revision)
            return self._json([tree_entry(n, d) for n, d in sorted(hub.files.items())])
        if path.startswith(resolve):
            revision, _, name = path.removeprefix(resolve).partition("/")
            commit = {"X-Repo-Commit": hub.commit}
            if not hub.knows(revision):
                return self._send(404, headers=missing_revision)
            if name not in hub.files:
                return self._send(404, headers={"X-Error-Code": "EntryNotFound", **commit})
            before_headers, before_body = (
                hub.delays.get(name, (0.0, 0.0)) if self.command == "GET" else (0.0, 0.0)
            )
            time.sleep(before_headers)
            data = hub.files[name]
            entry = tree_entry(name, data)
            headers = {**commit, "ETag": f'"{entry["oid"]}"'}
            if "lfs" in entry:
                headers["X-Linked-Etag"] = f'"{entry["lfs"]["oid"]}"'
                headers["X-Linked-Size"] = str(len(data))
            headers["Content-Type"] = "application/octet-stream"
            return self._send(200, data, headers, before_body=before_body)
        return self._send(404, headers={"X-Error-Code": "RepoNotFound"})
