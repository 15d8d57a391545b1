"""One real-browser test: the demo flow in headless Chromium against ``streamlit run``.

Catches what AppTest cannot: the app starting as a server, front-end rendering of the
Plotly charts, navigation that keeps the session. Skipped where Chromium is missing.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import anndata
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


def test_demo_flow_in_a_real_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with screenshots.running_app() as url, sync_api.sync_playwright() as playwright:
        browser = screenshots.launch_browser(playwright)
        try:
            context = browser.new_context(viewport=screenshots.VIEWPORT, accept_downloads=True)
            page = context.new_page()
            screenshots.open_app(page, url)
            reference_map = page.locator(".js-plotly-plot").first
            reference_map.wait_for(state="visible", timeout=60_000)

            screenshots.go_to(page, "Data")
            page.get_by_role("button", name="Load demo dataset").click()
            page.get_by_text("Peaks in universe").wait_for(timeout=screenshots.SLOW_MS)
            screenshots.wait_idle(page)

            screenshots.go_to(page, "Project")
            page.get_by_role("button", name="Project cells").click()
            # the status label, not the sidebar's "Not projected"
            done = page.get_by_text(re.compile(r"^Projected [\d,]+ cells in")).first
            done.wait_for(timeout=screenshots.SLOW_MS)
            screenshots.wait_idle(page)
            plot = page.locator(".js-plotly-plot").first
            plot.wait_for(state="visible", timeout=60_000)
            assert plot.is_visible()
            for tab in ("Per-cluster panels", "Embedding layout"):  # lazy tabs
                page.get_by_role("tab", name=tab).click()
                screenshots.wait_idle(page)
                # the plot of the open tab (closed lazy tabs may still hold a hidden one)
                shown = page.locator(".js-plotly-plot").locator("visible=true").first
                shown.wait_for(state="visible", timeout=screenshots.SLOW_MS)
            watch_the_cells_move_into_place(page)

            screenshots.go_to(page, "Annotation")
            screenshots.select_option(page, "true cell types", "cell_type")
            confusion = page.locator(".js-plotly-plot .gtitle", has_text="Confusion matrix")
            confusion.wait_for(timeout=60_000)
            assert confusion.is_visible()
            probability_map = page.locator(".js-plotly-plot .colorbar")  # P(class) colour scale
            assert probability_map.count() >= 1
            page.get_by_role("tab", name="Why this label").click()
            screenshots.wait_idle(page)
            page.get_by_text("Labels of its nearest reference cells").wait_for(timeout=60_000)

            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "annotation.png"), full_page=True)
            assert (tmp_path / "annotation.png").stat().st_size > 10_000

            # deferred downloads run outside the script thread: check they really work
            screenshots.go_to(page, "Export")
            for label, name in (("Annotated .h5ad", "out.h5ad"), ("Confusion matrix", "c.html")):
                with page.expect_download(timeout=120_000) as download:
                    page.get_by_role("button", name=label).click()
                download.value.save_as(tmp_path / name)
            annotated = anndata.read_h5ad(tmp_path / "out.h5ad")
            assert {"scembed_cluster", "scembed_label"} <= set(annotated.obs.columns)
            classes = list(annotated.uns["scembed"]["label_classes"])
            assert annotated.obsm["scembed_label_probabilities"].shape == (annotated.n_obs, 16)
            assert len(classes) == 16
            assert b"Confusion matrix" in (tmp_path / "c.html").read_bytes()
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


#: The query trace's points and the last animation frame's, read from the Plotly graph div.
_POINTS_JS = """() => {
    const gd = [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => g._transitionData && g._transitionData._frames.length);
    const frames = gd._transitionData._frames;
    const raw = v => (v && v.bdata !== undefined ? v.bdata : Array.from(v));
    const key = trace => JSON.stringify([raw(trace.x), raw(trace.y)]);
    return {now: key(gd.data[1]), last: key(frames[frames.length - 1].data[0]),
            first: key(frames[0].data[0]), n: gd._fullData[1].x.length};
}"""


def watch_the_cells_move_into_place(page) -> None:
    """The 'Watch it project' tab: Play runs the frames and ends on the final map."""
    page.get_by_role("tab", name="Watch it project").click()
    screenshots.wait_idle(page)
    page.locator(".slider-container").first.wait_for(timeout=60_000)
    play = page.locator(".updatemenu-button", has_text="Play").first
    play.scroll_into_view_if_needed()
    points = page.evaluate(_POINTS_JS)
    assert points["n"] > 100  # the query cells are drawn
    assert points["now"] == points["last"] != points["first"]  # final map is the default view
    play.click()
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = page.evaluate(_POINTS_JS)["now"]
        if not seen or now != seen[-1]:
            seen.append(now)
        if len(seen) > 3 and now == points["last"]:
            break
        page.wait_for_timeout(50)
    assert len(seen) > 3, f"the cells did not move through the frames ({len(seen)} states)"
    assert seen[-1] == points["last"]  # and stopped on the final positions
    assert page.locator('[data-testid="stException"]').count() == 0
