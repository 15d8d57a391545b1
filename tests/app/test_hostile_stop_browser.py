"""A closed tab ends a 3e9-epoch projection on a real server (attack run 2026-12, H16)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshots  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(screenshots.CHROMIUM).exists(), reason=f"{screenshots.CHROMIUM} not installed"
    ),
]


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_three_billion_epoch_projection_stops_when_the_tab_closes(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    marker = tmp_path / "probe.txt"
    port = screenshots.free_port()
    env = {
        **os.environ,
        "SCEMBED_STOP_PROBE": str(marker),
        "PYTHONPATH": str(ROOT),
        "NUMBA_NUM_THREADS": "1",
        "SCEMBED_RUN_SECONDS": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "tests/app/stop_probe_page.py"),
         "--server.port", str(port), "--server.headless", "true", "--server.address",
         "127.0.0.1", "--browser.gatherUsageStats", "false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200
            except OSError:
                return False

        assert _wait_for(healthy, 120), "the server did not start"
        with sync_api.sync_playwright() as playwright:
            browser = screenshots.launch_browser(playwright)
            page = browser.new_page()
            page.goto(url)
            assert _wait_for(lambda: marker.is_file(), 180), "the page never started"
            time.sleep(2)  # well inside the kernel (compiled or loaded from numba's cache)
            assert marker.read_text() == "running"
            page.close()
            browser.close()
        closed = time.monotonic()
        assert _wait_for(lambda: marker.read_text() != "running", 60), "still running"
        assert marker.read_text().startswith("cancelled: The projection"), marker.read_text()
        assert time.monotonic() - closed < 60
    finally:
        server.terminate()
        server.wait(timeout=30)
