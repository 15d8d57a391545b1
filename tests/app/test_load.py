"""Several people on one server at once: no cross-talk, bounded memory, temp files removed.

A real ``streamlit run`` server is driven by several independent browser contexts (each
its own Streamlit session, like separate users) in headless Chromium. Each uploads a
different slice of the demo cells and projects it while the others do the same, so the
heavy work overlaps on the server; each must then see only its own cells. AppTest cannot
do this: it swaps process-global runtime objects per run and is not thread-safe.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import anndata as ad
import psutil
import pytest
from streamlit.testing.v1 import AppTest

from scembed_app import state
from scembed_core.reference import DEMO_QUERY_PATH

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshots  # noqa: E402

APP = str(ROOT / "app.py")
#: Users at once, each with a slice of a different size (so any cross-talk shows): four in
#: the suite, eight when `make bench-sessions` measures memory (``SCEMBED_LOAD_SESSIONS``).
SESSION_SIZES = (120, 140, 160, 180, 200, 220, 240, 260)[
    : int(os.environ.get("SCEMBED_LOAD_SESSIONS", "4"))
]
SLICE_STEP = 160


def _rss(process: psutil.Process) -> int:
    """Resident memory of a process and its children, in bytes."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


def _metric(page, label: str) -> int:
    """The integer value of the ``st.metric`` whose label is ``label``."""
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    value = box.locator('[data-testid="stMetricValue"]').inner_text()
    return int(value.replace(",", ""))


def _upload_dirs() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "scembed-upload-*")))


@pytest.mark.browser
@pytest.mark.skipif(not Path(screenshots.CHROMIUM).exists(), reason="chromium not installed")
def test_concurrent_sessions_do_not_see_each_other(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    files = []
    for i, size in enumerate(SESSION_SIZES):
        path = tmp_path / f"session{i}.h5ad"
        demo[i * SLICE_STEP : i * SLICE_STEP + size].copy().write_h5ad(path)
        files.append(path)
    uploads_before = _upload_dirs()

    with (
        screenshots.running_server() as (url, process),
        sync_api.sync_playwright() as playwright,
    ):
        server = psutil.Process(process.pid)
        browser = screenshots.launch_browser(playwright)
        try:
            pages = [screenshots.new_context(browser).new_page() for _ in files]
            for page in pages:
                screenshots.open_app(page, url)
            rss_idle = _rss(server)
            for page, path in zip(pages, files, strict=True):
                screenshots.go_to(page, "Data")
                page.locator('input[type="file"]').set_input_files(str(path))
            for page, size in zip(pages, SESSION_SIZES, strict=True):
                page.get_by_text(f"Data: {size:,} cells").first.wait_for(timeout=120_000)
            # start every projection before waiting for any: the server runs them together
            for page in pages:
                screenshots.go_to(page, "Project")
                page.get_by_role("button", name="Project cells").click()
            peak = rss_idle
            for page, size in zip(pages, SESSION_SIZES, strict=True):
                done = page.get_by_text(re.compile(rf"^Projected {size:,} cells in")).first
                done.wait_for(timeout=screenshots.SLOW_MS)
                peak = max(peak, _rss(server))
            for i, page in enumerate(pages):
                screenshots.wait_idle(page)
                text = page.locator('[data-testid="stSidebar"]').inner_text()
                assert f"session{i}.h5ad" in text
                others = [f"session{j}.h5ad" for j in range(len(files)) if j != i]
                assert not any(name in text for name in others), text
                assert page.locator('[data-testid="stException"]').count() == 0
            # each session's labels are those of its own cells: labelled, Unknown and
            # Unassigned add up to its size
            for page, size in zip(pages, SESSION_SIZES, strict=True):
                screenshots.go_to(page, "Annotation")
                screenshots.wait_idle(page)
                labelled = sum(
                    _metric(page, m) for m in ("Cells labelled", "Unknown", "Unassigned")
                )
                assert labelled == size, (labelled, size)
                assert page.locator('[data-testid="stException"]').count() == 0
                peak = max(peak, _rss(server))
        finally:
            browser.close()
    growth = (peak - rss_idle) / 2**20
    print(
        f"\n{len(files)} concurrent sessions: server RSS idle {rss_idle / 2**20:.0f} MiB, "
        f"peak {peak / 2**20:.0f} MiB (+{growth:.0f} MiB, {growth / len(files):.0f} MiB "
        "per session)"
    )
    report = os.environ.get("SCEMBED_LOAD_REPORT")  # `make bench-sessions` reads this
    if report:
        Path(report).write_text(
            json.dumps(
                {
                    "sessions": len(files),
                    "cells_per_session": list(SESSION_SIZES),
                    "rss_idle_bytes": rss_idle,
                    "rss_peak_bytes": peak,
                }
            )
        )
    assert growth < 1024, f"server memory grew by {growth:.0f} MiB for {len(files)} small uploads"
    assert _upload_dirs() <= uploads_before, "per-session upload folders are removed"


def test_bad_upload_keeps_earlier_results():
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page(state.PAGE_DATA).run()
    [b for b in at.button if b.label == "Load demo dataset"][0].click().run()
    at.switch_page(state.PAGE_PROJECT).run()
    [b for b in at.button if b.label == "Project cells"][0].click().run()
    dataset, run = at.session_state[state.DATASET], at.session_state[state.PROJECTION]
    assert run is not None
    at.switch_page(state.PAGE_DATA).run()
    at.file_uploader(key="upload_files").set_value(
        [("broken.h5ad", b"garbage", "application/octet-stream")]
    )
    at.run()
    assert at.error and not at.exception
    assert at.session_state[state.DATASET] is dataset, "the loaded dataset is kept"
    assert at.session_state[state.PROJECTION] is run, "the projection is kept"
