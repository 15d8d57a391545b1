"""A biologist's first hour in a real browser (issue 23): one colour per label on every
chart, a truth column preselected and renamed labels scored after one click, a second
dataset starting from the defaults, and figures saved as valid PNG and SVG images.

One server, one browser session, the demo and a copy of it with renamed labels.
"""

from __future__ import annotations

import re
import struct
import sys
import xml.etree.ElementTree as ET
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

#: The demo's cell types as another lab might name them (case, punctuation, other words).
RENAMED = {
    "B": "B cells",
    "NK": "natural killer",
    "CD14.Mono.1": "Monocytes",
    "CD14.Mono.2": "Monocytes",
    "CD4.N1": "cd4 n1",  # the same name up to case and punctuation: matched with no click
}

#: Every categorical trace of every chart on the page: [chart title, trace name, colour].
_TRACE_COLOURS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(gd => {
    const title = (gd.layout.title && (gd.layout.title.text || gd.layout.title)) || '';
    return gd.data.filter(t => t.marker && typeof t.marker.color === 'string')
        .map(t => [String(title), String(t.name || ''), t.marker.color]);
})"""


def _colours(page) -> dict[str, str]:
    """Label -> colour of the categorical traces shown (the "(n cells)" suffix dropped)."""
    out = {}
    for _, name, colour in page.evaluate(_TRACE_COLOURS_JS):
        label = re.sub(r" \(\d[\d,]*\)$", "", name)
        out[label] = colour.upper()
    return out


def _metric(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]', has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def _metric_becomes(page, label: str, value: str) -> None:
    """Wait until the metric shows ``value`` (a slider sends its value after a short pause,
    so the rerun it asks for may not have started when the key press returns)."""
    from playwright.sync_api import expect

    metric = page.locator('[data-testid="stMetric"]', has_text=label).first
    expect(metric.locator('[data-testid="stMetricValue"]')).to_have_text(
        value, timeout=screenshots.SLOW_MS
    )
    screenshots.wait_idle(page)


def _save_chart(page, chart, path: Path) -> bytes:
    """Click the chart's camera button (plotly.js makes the image in the browser)."""
    chart.scroll_into_view_if_needed()
    chart.hover()
    button = chart.locator('.modebar-btn[data-title^="Download plot"]')
    with page.expect_download(timeout=screenshots.SLOW_MS) as download:
        button.click(force=True)
    download.value.save_as(path)
    return path.read_bytes()


def _png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">I", data[16:20])[0]


def _assert_svg(data: bytes) -> None:
    root = ET.fromstring(data)  # well-formed XML
    assert root.tag.endswith("svg"), root.tag
    assert len(data) > 2_000


def _renamed_demo(path: Path) -> Path:
    from scembed_core.reference import DEMO_QUERY_PATH

    adata = anndata.read_h5ad(DEMO_QUERY_PATH)
    names = adata.obs["cell_type"].astype(str).map(lambda x: RENAMED.get(x, x))
    adata.obs["cell_type"] = names.astype("category")
    adata.obs = adata.obs.drop(columns=["bio_classification"])
    adata.write_h5ad(path)
    return path


def _project(page) -> None:
    screenshots.go_to(page, "Project")
    page.get_by_role("button", name=re.compile("Project cells")).click()
    page.get_by_text(re.compile(r"^Projected [\d,]+ cells in")).first.wait_for(
        timeout=screenshots.SLOW_MS
    )
    screenshots.wait_idle(page)


def test_a_biologists_first_hour(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    renamed = _renamed_demo(tmp_path / "renamed_labels.h5ad")
    with screenshots.running_app() as url, sync_api.sync_playwright() as playwright:
        browser = screenshots.launch_browser(playwright)
        try:
            context = screenshots.new_context(browser, accept_downloads=True)
            page = context.new_page()
            screenshots.open_app(page, url)
            page.locator(".js-plotly-plot").first.wait_for(
                state="visible", timeout=screenshots.SLOW_MS
            )
            on_reference = _colours(page)  # the reference map and the bar of cell counts
            assert len({on_reference[k] for k in ("NK", "B", "CD14.Mono.1", "CD4.N1")}) == 4

            # --- the demo: the same label has the same colour on the query maps -------------
            screenshots.go_to(page, "Data")
            page.get_by_role("button", name=re.compile("Load demo dataset")).click()
            page.get_by_text("Peaks in universe").wait_for(timeout=screenshots.SLOW_MS)
            screenshots.wait_idle(page)
            _project(page)
            screenshots.go_to(page, "Annotation")  # the truth column is preselected
            page.locator(
                ".js-plotly-plot .gtitle", has_text=re.compile("^Confusion matrix$")
            ).wait_for(timeout=screenshots.SLOW_MS)
            accuracy_demo = float(_metric(page, "Accuracy"))
            assert accuracy_demo > 0.6
            screenshots.go_to(page, "Project")
            screenshots.select_option(page, "Colour query cells by", "Transferred label")
            page.locator(".js-plotly-plot .legendtext", has_text="NK").first.wait_for()
            on_query = _colours(page)
            shared = (set(on_reference) & set(on_query)) - {"reference"}
            assert len(shared) >= 12, shared
            assert {k: on_query[k] for k in shared} == {k: on_reference[k] for k in shared}
            screenshots.select_option(page, "Colour query cells by", "cell_type")  # the truth
            page.locator(".js-plotly-plot .legendtext", has_text="HSC").first.wait_for()
            on_truth = _colours(page)
            shared = (set(on_reference) & set(on_truth)) - {"reference"}
            assert {k: on_truth[k] for k in shared} == {k: on_reference[k] for k in shared}

            # a dataset-specific setting: one step up the resolution slider
            screenshots.go_to(page, "Clusters")
            page.get_by_role("slider").first.focus()
            page.keyboard.press("ArrowRight")
            _metric_becomes(page, "Resolution", "1.050")

            # --- figures: PNG at print resolution and SVG, made in the browser ---------------
            screenshots.go_to(page, "Annotation")
            chart = page.locator(
                ".js-plotly-plot",
                has=page.locator(".gtitle", has_text=re.compile("^Confusion matrix$")),
            ).first
            png = _save_chart(page, chart, tmp_path / "confusion.png")
            assert _png_width(png) >= 3 * chart.bounding_box()["width"]
            sidebar = page.locator('[data-testid="stSidebar"]')
            svg = sidebar.get_by_role("radio", name="SVG")  # a segmented control
            svg.wait_for(timeout=screenshots.SLOW_MS)
            svg.click()
            screenshots.wait_idle(page)
            chart = page.locator(
                ".js-plotly-plot",
                has=page.locator(".gtitle", has_text=re.compile("^Confusion matrix$")),
            ).first
            _assert_svg(_save_chart(page, chart, tmp_path / "confusion.svg"))

            # --- a second dataset: renamed labels, and it starts from the defaults ----------
            screenshots.go_to(page, "Data")
            page.locator('input[type="file"]').first.set_input_files(str(renamed))
            page.get_by_text("Peaks in universe").wait_for(timeout=screenshots.SLOW_MS)
            screenshots.wait_idle(page)
            notice = page.get_by_text(re.compile("New dataset: .*resolution")).first
            notice.wait_for(timeout=screenshots.SLOW_MS)
            _project(page)
            screenshots.go_to(page, "Clusters")
            assert _metric(page, "Resolution") == "1.000"

            screenshots.go_to(page, "Annotation")
            page.locator(
                ".js-plotly-plot .gtitle", has_text=re.compile("^Confusion matrix$")
            ).wait_for(
                timeout=screenshots.SLOW_MS
            )  # the truth column was preselected: scored with no choice made
            assert page.get_by_text("Preselected: cell_type").count() == 1
            before = float(_metric(page, "Accuracy"))
            assert before < accuracy_demo - 0.1, (before, accuracy_demo)
            page.get_by_role("button", name=re.compile("Suggest a mapping")).click()
            screenshots.wait_idle(page)
            page.get_by_text("Mapping suggested from the cells").wait_for(
                timeout=screenshots.SLOW_MS
            )
            after = float(_metric(page, "Accuracy"))
            assert after >= accuracy_demo - 1e-3, (after, accuracy_demo)
            assert float(_metric(page, "Lineage accuracy")) >= after

            # the truth map of the renamed labels shows the reference's colours
            screenshots.go_to(page, "Clusters")
            screenshots.select_option(page, "Colour query cells by", "cell_type")
            page.locator(".js-plotly-plot .legendtext", has_text="natural killer").first.wait_for()
            renamed_colours = _colours(page)
            assert renamed_colours["natural killer"] == on_reference["NK"]
            assert renamed_colours["B cells"] == on_reference["B"]
            assert renamed_colours["cd4 n1"] == on_reference["CD4.N1"]
            assert renamed_colours["Monocytes"] == on_reference["CD14.Mono.1"]

            # --- every figure at once: an offline page with PNG and SVG buttons -------------
            screenshots.go_to(page, "Export")
            with page.expect_download(timeout=120_000) as download:
                page.get_by_role("button", name=re.compile("All figures")).click()
            bundle = tmp_path / "figures.html"
            download.value.save_as(bundle)
            offline = context.new_page()
            offline.goto(bundle.as_uri())
            offline.locator("#fig-0 .main-svg").first.wait_for(timeout=screenshots.SLOW_MS)
            titles = offline.locator("h2").all_inner_texts()
            assert any(t.endswith("_confusion") for t in titles)
            assert any(t.endswith("_lineage_confusion") for t in titles)
            for fmt in ("png", "svg"):
                with offline.expect_download(timeout=screenshots.SLOW_MS) as download:
                    offline.locator("section").first.get_by_role(
                        "button", name=fmt.upper(), exact=True
                    ).click()
                data_path = tmp_path / f"bundle.{fmt}"
                download.value.save_as(data_path)
                data = data_path.read_bytes()
                if fmt == "png":
                    assert _png_width(data) >= 1_000
                else:
                    _assert_svg(data)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
