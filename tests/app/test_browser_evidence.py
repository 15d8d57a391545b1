"""Real browser: the Annotation page's Evidence tab shows the second opinion and the dot plot,
and colours the reference map by a chosen gene's activity."""

from __future__ import annotations

import re
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

#: Colour-bar titles of the drawn Plotly charts.
_COLORBARS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(g => g.offsetParent !== null)
    .flatMap(g => (g.data || []).map(t => (t.marker && t.marker.colorbar
        && t.marker.colorbar.title && t.marker.colorbar.title.text) || ''))"""


def test_evidence_tab_colours_the_map_by_a_gene(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with screenshots.running_app() as url, sync_api.sync_playwright() as playwright:
        browser = screenshots.launch_browser(playwright)
        try:
            page = browser.new_page(viewport=screenshots.VIEWPORT)
            screenshots.open_app(page, url)
            screenshots.run_demo_flow(page)
            page.get_by_role("tab", name="Evidence").click()
            screenshots.wait_idle(page)
            page.get_by_text("Second opinion: the reference type").wait_for(timeout=120_000)
            page.get_by_text("Gene activity on the reference map").wait_for(timeout=120_000)
            combo = page.get_by_role("combobox", name="Colour the map by the activity of")
            combo.scroll_into_view_if_needed()
            combo.click()
            page.keyboard.type("CD3E")  # filters the gene list (thousands of genes)
            page.get_by_role("option", name="CD3E", exact=True).click(timeout=120_000)
            screenshots.wait_idle(page)
            caption = page.get_by_text(re.compile(r"cells have an open peak in CD3E's window"))
            caption.wait_for(timeout=120_000)
            page.wait_for_function(
                f"() => ({_COLORBARS_JS})().includes('CD3E activity')", timeout=60_000
            )
            titles = page.evaluate(_COLORBARS_JS)
            assert "CD3E activity" in titles and "mean activity" in titles  # map + dot plot
            page.get_by_text("Top marker regions").wait_for(timeout=60_000)
            assert page.get_by_role("button", name=re.compile("marker regions \\(CSV\\)")).count()
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "evidence.png"), full_page=True)
        finally:
            browser.close()
