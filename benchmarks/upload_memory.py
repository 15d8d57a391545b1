"""Peak memory of reading an upload, per MB of file (issue 22, attack run D7).

Runs the app's upload path (:func:`scembed_app.uploads.load_uploads` on the file's bytes,
as the Data page does) in a fresh process per file and reports the peak resident memory
added (``VmHWM`` minus ``VmRSS`` after imports) divided by the file size. ``--code DIR``
measures another checkout of the code (e.g. ``git archive eefe4de`` unpacked) for a
same-run baseline.

``--app`` measures the whole app instead: a real ``streamlit run app.py`` server in hosted
mode (one fresh server per file), Chromium uploads the file on the Data page, and the
server's peak resident memory during the upload (``VmHWM``, reset through
``/proc/PID/clear_refs`` just before it) minus its resident memory just before is reported
per MB of file; it covers Streamlit receiving the upload, the parse, the workspace write and
the page's QC, as in production. The upload starts once the server's background warm-ups
are done (its CPU quiet). ``--floor`` uploads into a one-widget app instead
(``benchmarks/upload_floor_app.py``: ``st.file_uploader`` and ``getvalue()``), Streamlit's own
share; ``--trace DIR`` writes the server's RSS every 10 ms and its log.

    nice -n 10 python -m benchmarks.upload_memory --sizes 1 8 24 [--code /tmp/base]
    nice -n 10 python -m benchmarks.upload_memory --app --sizes 24 48 96 [--code /tmp/base]
    nice -n 10 python -m benchmarks.upload_memory --app --floor --sizes 24 48 96
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scembed_core" / "data" / "demo_query.h5ad"

CHILD = """
import json, sys
from pathlib import Path
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key))
from scembed_app.uploads import load_uploads
import anndata, h5py, scipy.sparse  # noqa: F401
path = Path(sys.argv[1])
data = path.read_bytes()
base = status('VmRSS')
dataset = load_uploads([(path.name, data)])
print(json.dumps({'base': base, 'peak': status('VmHWM'), 'file': len(data),
                  'cells': int(dataset.adata.n_obs)}))
"""


FLOOR_APP = Path(__file__).with_name("upload_floor_app.py")


def make_upload(copies: int, folder: Path, *, gzip: bool = False) -> Path:
    """The demo query repeated ``copies`` times with renamed cells, written uncompressed.

    ``gzip``: written with gzip-compressed elements instead (``upload_NNx.gz.h5ad``); the
    uncompressed file is written beside it, its size the upload's decompressed size.
    """
    import anndata as ad

    demo = ad.read_h5ad(DEMO)
    parts = []
    for i in range(copies):
        part = demo.copy()
        part.obs_names = [f"{name}-{i}" for name in demo.obs_names]
        parts.append(part)
    path = folder / f"upload_{copies}x.h5ad"
    adata = ad.concat(parts, merge="same")
    adata.write_h5ad(path)
    if not gzip:
        return path
    packed = folder / f"upload_{copies}x.gz.h5ad"
    adata.write_h5ad(packed, compression="gzip")
    return packed


def measure(path: Path, code: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env,
        cwd=code, check=True,
    )  # fmt: skip
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["added_per_file_mb"] = (row["peak"] - row["base"]) / row["file"]
    return row


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key))


def _cells(path: Path) -> int:
    import anndata as ad

    return int(ad.read_h5ad(path, backed="r").n_obs)


def _wait_quiet(pid: int, *, timeout: float = 120.0) -> None:
    """Wait until the server's threads are done (under 0.05 CPU s in a second).

    The router starts kernel and projection warm-ups in the background after the first
    page; an upload measured while they still run counts their memory as the upload's.
    """
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    deadline = time.monotonic() + timeout
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu()
        if now - before < 0.05:
            return
        before = now


def _sample_rss(pid: int, stop: threading.Event, trace: list) -> None:
    """Append ``(time.time(), VmRSS)`` every 10 ms until ``stop`` is set."""
    while not stop.is_set():
        try:
            trace.append((time.time(), _status(pid, "VmRSS")))
        except (OSError, StopIteration):
            return
        stop.wait(0.01)


def _write_trace(trace_dir: Path, path: Path, base: int, trace: list) -> None:
    """The RSS trace as ``seconds  MB-above-base  x-file`` lines, for bisecting by time."""
    size = path.stat().st_size
    with open(trace_dir / f"{path.stem}.rss.txt", "w") as handle:
        for stamp, rss in trace:
            handle.write(f"{stamp:.3f} {(rss - base) / 1e6:9.1f} {(rss - base) / size:6.2f}\n")


def measure_app(
    path: Path,
    code: Path,
    *,
    app: Path | None = None,
    trace_dir: Path | None = None,
    project: bool = False,
) -> dict:
    """Upload ``path`` on the Data page of a fresh hosted server; its memory around it.

    ``app`` runs another script instead (the floor: a bare ``st.file_uploader`` app,
    :data:`FLOOR_APP`); ``trace_dir`` also writes the server's RSS every 10 ms and its log
    (wall-clock stamps, to set beside stamps a scratch copy of the page prints);
    ``project`` then also clicks "Project cells" and reports the server's peak during the
    projection (``project_peak``, ``project_after``).
    """

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "scripts"))
    import screenshots

    if trace_dir:
        trace_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as spaces:
        env = {
            "PYTHONPATH": str(code),
            "NUMBA_NUM_THREADS": "1",
            "SCEMBED_HOSTED": "1",
            "SCEMBED_WORKSPACES": spaces,
            "SCEMBED_RUN_SECONDS": "0",
            "SCEMBED_UPLOAD_MB": "1024",  # measure above the hosted limit too
        }
        with (
            screenshots.running_server(
                env=env,
                timeout=300,
                cwd=code,
                app=app or code / "app.py",
                log_path=trace_dir / f"{path.stem}.log" if trace_dir else None,
            ) as (url, process),
            sync_playwright() as playwright,
        ):
            browser = screenshots.launch_browser(playwright)
            page = screenshots.new_context(browser).new_page()
            if app is None:
                screenshots.open_app(page, url, timeout=300_000)
                screenshots.go_to(page, "Data", timeout=300_000)
                # warm: the demo loads every module and kernel the Data page uses, so what
                # is measured is the upload's own memory, not first imports
                page.get_by_role("button", name="Load demo dataset").click()
                page.get_by_text("Peaks in universe").wait_for(timeout=300_000)
            else:
                page.goto(url, timeout=300_000)
                page.get_by_text("floor ready").wait_for(timeout=300_000)
            screenshots.wait_idle(page, timeout=300_000)
            time.sleep(2)
            _wait_quiet(process.pid)
            with open(f"/proc/{process.pid}/clear_refs", "w") as handle:
                handle.write("5")  # VmHWM := VmRSS
            base = _status(process.pid, "VmRSS")
            trace: list = []
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_rss, args=(process.pid, stop, trace))
            if trace_dir:
                sampler.start()
            started = time.perf_counter()
            page.locator('input[type="file"]').first.set_input_files(str(path))
            done = f"received {path.stat().st_size}" if app else path.name
            page.get_by_role("heading", name=done).wait_for(timeout=600_000)
            screenshots.wait_idle(page, timeout=600_000)
            seconds = time.perf_counter() - started
            if trace_dir:
                time.sleep(1)  # what is held afterwards
                stop.set()
                sampler.join()
                _write_trace(trace_dir, path, base, trace)
            peak = _status(process.pid, "VmHWM")
            after = _status(process.pid, "VmRSS")
            extra = {}
            if project:
                import re

                screenshots.go_to(page, "Project", timeout=600_000)
                screenshots.wait_idle(page, timeout=600_000)
                with open(f"/proc/{process.pid}/clear_refs", "w") as handle:
                    handle.write("5")
                page.get_by_role("button", name=re.compile("Project cells")).click()
                page.get_by_text(re.compile(r"^Projected [\d,]+ cells in")).first.wait_for(
                    timeout=600_000
                )
                screenshots.wait_idle(page, timeout=600_000)
                extra = {
                    "project_peak": _status(process.pid, "VmHWM"),
                    "project_after": _status(process.pid, "VmRSS"),
                }
            browser.close()
    return {
        "base": base,
        "peak": peak,
        "after": after,
        "file": path.stat().st_size,
        "cells": _cells(path),
        "seconds": seconds,
        "added_per_file_mb": (peak - base) / path.stat().st_size,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 24])
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--app", action="store_true", help="a real server and browser upload")
    parser.add_argument(
        "--floor", action="store_true", help="with --app: a bare st.file_uploader app instead"
    )
    parser.add_argument("--trace", type=Path, help="with --app: RSS trace and server log here")
    parser.add_argument(
        "--gzip", action="store_true", help="gzip-compressed h5ad (ratio to decompressed too)"
    )
    parser.add_argument(
        "--project", action="store_true", help="with --app: then project, its peak too"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.sizes:
            path = make_upload(copies, Path(tmp), gzip=args.gzip)
            plain = path.with_name(f"upload_{copies}x.h5ad").stat().st_size
            if args.app:
                app = FLOOR_APP if args.floor else None
                row = measure_app(
                    path, args.code, app=app, trace_dir=args.trace, project=args.project
                )
            else:
                row = measure(path, args.code)
            if "project_peak" in row:
                print(
                    f"{copies:>3}x demo  projection: server peak "
                    f"{row['project_peak'] / 1e6:6.0f} MB = +"
                    f"{(row['project_peak'] - row['base']) / row['file']:.2f} x file above the "
                    f"server before the upload; after {row['project_after'] / 1e6:6.0f} MB",
                    flush=True,
                )
            if args.app:
                print(
                    f"{copies:>3}x demo  file {row['file'] / 1e6:7.1f} MB  server before "
                    f"{row['base'] / 1e6:6.0f} MB  peak {row['peak'] / 1e6:6.0f} MB  after "
                    f"{row['after'] / 1e6:6.0f} MB  ({row['seconds']:.0f} s)",
                    flush=True,
                )
            print(
                f"{copies:>3}x demo  file {row['file'] / 1e6:7.1f} MB  cells {row['cells']:>7,}  "
                f"peak +{(row['peak'] - row['base']) / 1e6:7.1f} MB  "
                f"= {row['added_per_file_mb']:.2f} x file"
                + (
                    f" = {(row['peak'] - row['base']) / plain:.2f} x decompressed "
                    f"({plain / 1e6:.1f} MB)"
                    if args.gzip
                    else ""
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
