"""Workspaces in a real browser: reload, share, fork, bad links, server restart.

Headless Chromium against a real ``streamlit run`` server whose workspaces live in a
temporary folder (``SCEMBED_WORKSPACES``). One server runs the whole module until the last
test restarts it; each "other browser" is a fresh browser context (no cookies, no storage).
The tests run in file order on one xdist worker and share the analysis made first.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshots  # noqa: E402

from scembed_app.workspace import WorkspaceStore, is_valid_id  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser_workspace"),
    pytest.mark.skipif(
        not Path(screenshots.CHROMIUM).exists(), reason=f"{screenshots.CHROMIUM} not installed"
    ),
]

SLOW = screenshots.SLOW_MS


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("workspaces")


@pytest.fixture(scope="module")
def server(root, tmp_path_factory):
    """The server (stoppable by the restart test): ``{"url", "stop", "log"}``."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    stack = contextlib.ExitStack()
    url, _ = stack.enter_context(
        screenshots.running_server(env={"SCEMBED_WORKSPACES": str(root)}, log_path=log)
    )
    yield {"url": url, "stop": stack.close, "log": log}
    stack.close()


def new_page(browser):
    context = screenshots.new_context(browser, accept_downloads=True)
    return context, context.new_page()


def ws_of(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("ws")
    return values[-1] if values else None


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]', has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def no_traceback(page, log: Path) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]


def settle(page) -> None:
    """Wait until the script run is over (the sidebar, drawn last, is up to date)."""
    screenshots.wait_idle(page)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=SLOW
    )


def go(page, title: str) -> None:
    screenshots.go_to(page, title)
    settle(page)


def wait_heading(page, title: str) -> None:
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=SLOW)
    settle(page)


def find_resolution(page, k: int) -> None:
    """The Clusters page's "find the resolution for k clusters" (changes the resolution)."""
    box = page.get_by_label("Find the resolution for k clusters")
    box.fill(str(k))
    box.press("Enter")
    settle(page)
    page.get_by_role("button", name="Find resolution").click()
    page.get_by_text(re.compile(r"gives|closest is")).first.wait_for(timeout=SLOW)
    settle(page)


def labels_csv(page, tmp_path: Path, name: str) -> bytes:
    """The Export page's per-cell table (labels, probabilities, clusters, map)."""
    go(page, "Export")
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name="Per-cell table (.csv)").click()
    target = tmp_path / name
    download.value.save_as(target)
    return target.read_bytes()


def link_in_sidebar(page) -> str:
    code = page.locator('[data-testid="stSidebar"] [data-testid="stMarkdown"] code').first
    return code.inner_text().strip()


@pytest.fixture(scope="module")
def analysis(server, browser, tmp_path_factory):
    """The demo projected, a non-default resolution chosen, left on the Clusters page."""
    context, page = new_page(browser)
    screenshots.open_app(page, server["url"])
    go(page, "Data")
    page.get_by_role("button", name="Load demo dataset").click()
    page.get_by_text("Peaks in universe").wait_for(timeout=SLOW)
    settle(page)
    go(page, "Project")
    page.get_by_role("button", name="Project cells").click()
    page.get_by_text(re.compile(r"^Projected [\d,]+ cells in")).first.wait_for(timeout=SLOW)
    settle(page)
    go(page, "Clusters")
    default = metric(page, "Resolution")
    find_resolution(page, 6)
    resolution = metric(page, "Resolution")
    assert resolution != default == "1.000"
    ws_id = ws_of(page.url)
    assert is_valid_id(ws_id), page.url
    csv = labels_csv(page, tmp_path_factory.mktemp("owner"), "owner.csv")
    go(page, "Clusters")
    link = link_in_sidebar(page)
    yield {
        "page": page,
        "ws": ws_id,
        "resolution": resolution,
        "n_clusters": metric(page, "Clusters"),
        "csv": csv,
        "link": link,
    }
    context.close()


def test_reload_keeps_the_projected_map_and_the_resolution(server, analysis):
    page = analysis["page"]
    assert analysis["link"] == f"{server['url']}/clusters?ws={analysis['ws']}"
    page.reload()
    wait_heading(page, "Clusters")
    assert ws_of(page.url) == analysis["ws"]
    assert metric(page, "Resolution") == analysis["resolution"]
    assert metric(page, "Clusters") == analysis["n_clusters"]
    assert screenshots.wait_plots(page, 3) >= 3, "curve, sizes and the map"
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert re.search(r"Projected [\d,]+ cells", sidebar), sidebar
    assert "read-only" not in sidebar, "the browser that made it keeps editing after a reload"
    no_traceback(page, server["log"])


def test_the_link_in_a_fresh_browser_shows_the_same_labels(server, browser, analysis, tmp_path):
    context, page = new_page(browser)
    try:
        page.goto(analysis["link"])
        wait_heading(page, "Clusters")
        assert metric(page, "Resolution") == analysis["resolution"]
        assert labels_csv(page, tmp_path, "viewer.csv") == analysis["csv"]
        no_traceback(page, server["log"])
    finally:
        context.close()


def test_a_change_on_a_shared_link_forks(server, browser, analysis, root):
    old = analysis["ws"]
    files = sorted((p.name, p.stat().st_mtime_ns) for p in (root / old).iterdir())
    state_before = WorkspaceStore(root).open(old).read_state()
    context, page = new_page(browser)
    try:
        page.goto(f"{server['url']}/?ws={old}")  # the root: opens on the stored page
        wait_heading(page, "Clusters")
        assert "read-only" in page.locator('[data-testid="stSidebar"]').inner_text()
        find_resolution(page, 9)
        page.get_by_text("saved as a new analysis").first.wait_for(timeout=SLOW)
        new = ws_of(page.url)
        assert is_valid_id(new) and new != old
        assert link_in_sidebar(page).endswith(f"?ws={new}")
        assert metric(page, "Resolution") != analysis["resolution"]
        assert (
            WorkspaceStore(root).open(new).read_state()["settings"]["resolution"]
            != (state_before["settings"]["resolution"])
        )
        assert WorkspaceStore(root).open(old).read_state() == state_before
        assert sorted((p.name, p.stat().st_mtime_ns) for p in (root / old).iterdir()) == files
        no_traceback(page, server["log"])
    finally:
        context.close()


def test_tampered_malformed_and_expired_links_show_a_clear_page(server, browser, analysis, root):
    old = analysis["ws"]
    expired = WorkspaceStore(root, clock=lambda: time.time() - 8 * 86400).create()
    expired.write_state({"page": "pages/clusters.py"})
    cases = {
        ("f" if old[0] != "f" else "e") + old[1:]: "Analysis not found",
        old[:-1] + "%2F..": "This link is not valid",
        expired.id: "This analysis has expired",
    }
    context, page = new_page(browser)
    try:
        for ws_id, title in cases.items():
            page.goto(f"{server['url']}/clusters?ws={ws_id}")
            wait_heading(page, title)
            restart = page.get_by_role("button", name="Start a new analysis")
            restart.wait_for(state="visible", timeout=SLOW)  # raises if it never shows
            assert page.get_by_role("heading", name=title, exact=True).first.is_visible()
            no_traceback(page, server["log"])
        page.get_by_role("button", name="Start a new analysis").click()
        wait_heading(page, "Data")
        assert ws_of(page.url) is None
    finally:
        context.close()


def test_the_link_still_works_after_a_server_restart(server, browser, analysis, root, tmp_path):
    server["stop"]()  # the first server is gone; only the disk remembers
    log = tmp_path / "restarted.log"
    env = {"SCEMBED_WORKSPACES": str(root)}
    with screenshots.running_app(env=env, log_path=log) as url:
        context, page = new_page(browser)
        try:
            page.goto(f"{url}/clusters?ws={analysis['ws']}")  # the same link on the new server
            wait_heading(page, "Clusters")
            assert metric(page, "Resolution") == analysis["resolution"]
            # drawn after the script run: wait for Plotly (counting at once failed under load)
            assert screenshots.wait_plots(page, 3) >= 3, "curve, sizes and the map"
            assert labels_csv(page, tmp_path, "restarted.csv") == analysis["csv"]
            no_traceback(page, log)
        finally:
            context.close()
