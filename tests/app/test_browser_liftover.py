"""Real browser: an hg38 upload on the Data page is detected and lifted onto the hg19
reference, the toggle turns it off, and the Project page says what was lifted."""

from __future__ import annotations

import sys
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


def test_hg38_upload_is_lifted_in_a_real_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_app_liftover import write_demo_hg38

    upload = write_demo_hg38(tmp_path / "demo_hg38.h5ad")
    with screenshots.running_app() as url, sync_api.sync_playwright() as playwright:
        browser = screenshots.launch_browser(playwright)
        try:
            page = screenshots.new_context(browser).new_page()
            screenshots.open_app(page, url)
            screenshots.go_to(page, "Data")
            page.locator('input[type="file"]').first.set_input_files(str(upload))
            lifted = page.get_by_text("Peaks were lifted from hg38 to hg19").first
            lifted.wait_for(timeout=screenshots.SLOW_MS)
            screenshots.wait_idle(page)
            metric = page.locator('[data-testid="stMetric"]', has_text="Detected build")
            assert "hg38" in metric.inner_text()
            toggle = page.get_by_text("Lift the peaks over from hg38 to hg19")
            assert toggle.is_visible()

            screenshots.go_to(page, "Project")
            page.get_by_text("Peaks were lifted from hg38 to hg19").first.wait_for(timeout=60_000)

            screenshots.go_to(page, "Data")
            page.get_by_text("Lift the peaks over from hg38 to hg19").click()
            page.get_by_text("Not lifted: the peaks look like hg38").wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
