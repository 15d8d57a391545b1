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
per MB of file; the server then holds Streamlit's copy of the upload, the parsed dataset,
the workspace write and the page's QC, as in production.

    nice -n 10 python -m benchmarks.upload_memory --sizes 1 8 24 [--code /tmp/base]
    nice -n 10 python -m benchmarks.upload_memory --app --sizes 8 24 48 [--code /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


def make_upload(copies: int, folder: Path) -> Path:
    """The demo query repeated ``copies`` times with renamed cells, written uncompressed."""
    import anndata as ad

    demo = ad.read_h5ad(DEMO)
    parts = []
    for i in range(copies):
        part = demo.copy()
        part.obs_names = [f"{name}-{i}" for name in demo.obs_names]
        parts.append(part)
    path = folder / f"upload_{copies}x.h5ad"
    ad.concat(parts, merge="same").write_h5ad(path)
    return path


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


def measure_app(path: Path, code: Path) -> dict:
    """Upload ``path`` on the Data page of a fresh hosted server; its memory around it."""
    import time

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "scripts"))
    import screenshots

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
            screenshots.running_server(env=env, timeout=300, cwd=code, app=code / "app.py") as (
                url,
                process,
            ),
            sync_playwright() as playwright,
        ):
            browser = screenshots.launch_browser(playwright)
            page = screenshots.new_context(browser).new_page()
            screenshots.open_app(page, url, timeout=300_000)
            screenshots.go_to(page, "Data", timeout=300_000)
            # warm: the demo loads every module and kernel the Data page uses, so what is
            # measured is the upload's own memory, not first imports
            page.get_by_role("button", name="Load demo dataset").click()
            page.get_by_text("Peaks in universe").wait_for(timeout=300_000)
            screenshots.wait_idle(page, timeout=300_000)
            time.sleep(2)
            with open(f"/proc/{process.pid}/clear_refs", "w") as handle:
                handle.write("5")  # VmHWM := VmRSS
            base = _status(process.pid, "VmRSS")
            started = time.perf_counter()
            page.locator('input[type="file"]').first.set_input_files(str(path))
            page.get_by_role("heading", name=path.name).wait_for(timeout=600_000)
            screenshots.wait_idle(page, timeout=600_000)
            seconds = time.perf_counter() - started
            peak = _status(process.pid, "VmHWM")
            after = _status(process.pid, "VmRSS")
            browser.close()
    return {
        "base": base,
        "peak": peak,
        "after": after,
        "file": path.stat().st_size,
        "cells": _cells(path),
        "seconds": seconds,
        "added_per_file_mb": (peak - base) / path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 24])
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--app", action="store_true", help="a real server and browser upload")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.sizes:
            path = make_upload(copies, Path(tmp))
            row = (measure_app if args.app else measure)(path, args.code)
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
                f"= {row['added_per_file_mb']:.2f} x file",
                flush=True,
            )


if __name__ == "__main__":
    main()
