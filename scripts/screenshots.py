"""Take a PNG of every page of the app into docs/screenshots/ (``python scripts/screenshots.py``).

Starts ``streamlit run app.py`` on a free port, drives headless Chromium through the demo
flow (load demo, project, pick a truth column) so the pages have content, and saves one
1280x800 screenshot per page. The helpers are also used by ``tests/app/test_browser.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
PAGES = ["Reference", "Data", "Project", "Clusters", "Annotation", "Train", "Export", "About"]
#: Pages whose most telling part is below the fold: scroll to this chart before the shot.
FOCUS = {"Project": "Colour query cells by", "Annotation": "Row-normalised"}
SLOW_MS = 240_000  # first projection in a fresh environment compiles numba code


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_app(
    port: int | None = None,
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run ``streamlit run app.py`` headless; yield its URL once /_stcore/health is 200.

    ``env`` adds variables to the server's environment; ``log_path`` keeps its output.
    """
    with running_server(port, timeout=timeout, env=env, log_path=log_path) as (url, _):
        yield url


@contextlib.contextmanager
def running_server(
    port: int | None = None,
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    app: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like :func:`running_app`, also yielding the server process (for memory figures).

    ``app`` is the script to run (default: the dashboard's ``app.py``), ``cwd`` the folder
    it runs in (default: this repository).
    """
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app or ROOT / "app.py"),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        command,
        cwd=cwd or ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not become healthy within {timeout} s")
            time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def launch_browser(playwright):
    """Headless Debian Chromium with the flags this machine needs."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def wait_idle(page, timeout: int = SLOW_MS) -> None:
    """Wait until the app stops running: no 'Running...' status widget and the script run
    over (the status widget alone can be gone before a rerun has replaced stale elements)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout
    )


def go_to(page, title: str, timeout: int = SLOW_MS) -> None:
    """Click a page in the sidebar navigation (keeps the session) and wait for its title."""
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_role("link", name=re.compile(rf"\b{re.escape(title)}$")).click()
    heading = "About scEmbed" if title == "About" else title
    page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=timeout)
    wait_idle(page, timeout)


def open_app(page, url: str, timeout: int = SLOW_MS) -> None:
    """Open the app and wait for the Reference page (loads the built-in reference)."""
    page.goto(url)
    page.get_by_role("heading", name="Reference", exact=True).first.wait_for(timeout=timeout)
    wait_idle(page, timeout)


def run_demo_flow(page, timeout: int = SLOW_MS) -> None:
    """Load the demo, project it, and choose its cell_type column as the truth."""
    go_to(page, "Data", timeout)
    page.get_by_role("button", name=re.compile("Load demo dataset")).click()
    page.get_by_text("Peaks in universe").wait_for(timeout=timeout)
    wait_idle(page, timeout)
    go_to(page, "Project", timeout)
    page.get_by_role("button", name=re.compile("Project cells")).click()
    page.get_by_text(re.compile(r"^Projected [\d,]+ cells in")).first.wait_for(timeout=timeout)
    wait_idle(page, timeout)
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=timeout)
    go_to(page, "Annotation", timeout)
    select_option(page, "true cell types", "cell_type", timeout)
    page.locator(".js-plotly-plot .gtitle", has_text="Confusion matrix").wait_for(timeout=timeout)


def select_option(page, label_text: str, option: str, timeout: int = SLOW_MS) -> None:
    """Choose ``option`` in the st.selectbox whose label contains ``label_text``."""
    combo = page.get_by_role("combobox", name=re.compile(re.escape(label_text)))
    combo.click()
    combo.fill(option)  # typing filters the list and opens it
    page.get_by_role("option", name=option, exact=True).click(timeout=timeout)
    wait_idle(page, timeout)


def take_screenshots(out: Path) -> list[Path]:
    """Run the demo flow and save one PNG per page into ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with running_app() as url, sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        open_app(page, url)
        run_demo_flow(page)
        for title in PAGES:
            go_to(page, title)
            if title in FOCUS:
                anchor = page.get_by_text(FOCUS[title]).first
                anchor.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(1500)  # let Plotly finish drawing
            path = out / f"{title.lower()}.png"
            page.screenshot(path=str(path))
            saved.append(path)
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    for path in take_screenshots(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
