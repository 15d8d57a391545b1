"""Real-browser tests: the demo flow in headless Chromium against ``streamlit run``.

Catches what AppTest cannot: the app starting as a server, front-end rendering of the
Plotly charts, navigation that keeps the session, deferred downloads. One server and one
page (the demo loaded and projected once) serve the module; each test then goes to the
page it checks. Skipped where Chromium is missing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anndata
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshots  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser_demo"),  # the tests share the module's server and page
    pytest.mark.skipif(
        not Path(screenshots.CHROMIUM).exists(), reason=f"{screenshots.CHROMIUM} not installed"
    ),
]

#: Colour-bar titles of the drawn Plotly charts.
_COLORBARS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(g => g.offsetParent !== null)
    .flatMap(g => (g.data || []).map(t => (t.marker && t.marker.colorbar
        && t.marker.colorbar.title && t.marker.colorbar.title.text) || ''))"""


@pytest.fixture(scope="module")
def page():
    """One browser page on a fresh server, the demo loaded and projected."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with screenshots.running_app() as url, sync_api.sync_playwright() as playwright:
        browser = screenshots.launch_browser(playwright)
        try:
            context = screenshots.new_context(browser, accept_downloads=True)
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
            yield page
        finally:
            browser.close()


def test_demo_flow_in_a_real_browser(page, tmp_path):
    screenshots.go_to(page, "Project")
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
    # the P(class) map's colour scale, once Plotly has drawn it
    page.locator(".js-plotly-plot .colorbar").first.wait_for(timeout=60_000)
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


def test_evidence_tab_colours_the_map_by_a_gene(page, tmp_path):
    """The Annotation page's Evidence tab shows the second opinion and the dot plot, and
    colours the reference map by a chosen gene's activity."""
    screenshots.go_to(page, "Annotation")
    page.get_by_role("tab", name="Evidence").click()
    screenshots.wait_idle(page)
    page.get_by_text("Second opinion: the reference type").wait_for(timeout=120_000)
    page.get_by_text("Gene activity on the reference map").wait_for(timeout=120_000)
    combo = page.get_by_role("combobox", name="Colour the map by the activity of")
    combo.scroll_into_view_if_needed()
    screenshots.select_option(page, "Colour the map by the activity of", "CD3E")
    caption = page.get_by_text(re.compile(r"cells have an open peak in CD3E's window"))
    caption.wait_for(timeout=120_000)
    page.wait_for_function(f"() => ({_COLORBARS_JS})().includes('CD3E activity')", timeout=60_000)
    titles = page.evaluate(_COLORBARS_JS)
    assert "CD3E activity" in titles and "mean activity" in titles  # map + dot plot
    page.get_by_text("Top marker regions").wait_for(timeout=60_000)
    assert page.get_by_role("button", name=re.compile("marker regions \\(CSV\\)")).count()
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(tmp_path / "evidence.png"), full_page=True)


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
#: Records in the page every distinct position of the query trace, one look per frame drawn.
_SAMPLE_JS = f"""() => {{
    const read = {_POINTS_JS};
    const seen = window.__seen = [];
    window.__sampling = true;
    const look = () => {{
        const now = read().now;
        if (!seen.length || seen[seen.length - 1] !== now) seen.push(now);
        if (window.__sampling) requestAnimationFrame(look);
    }};
    look();
}}"""
#: True once the trace went through more than 3 positions and rests on ``last``.
_MOVED_AND_STOPPED = """last => window.__seen.length > 3
    && window.__seen[window.__seen.length - 1] === last"""


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
    page.evaluate(_SAMPLE_JS)
    play.click()
    page.wait_for_function(_MOVED_AND_STOPPED, arg=points["last"], timeout=60_000)
    seen = page.evaluate("() => { window.__sampling = false; return window.__seen; }")
    assert len(seen) > 3, f"the cells did not move through the frames ({len(seen)} states)"
    assert seen[-1] == points["last"]  # and stopped on the final positions
    assert page.locator('[data-testid="stException"]').count() == 0
