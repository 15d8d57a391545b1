"""Take a PNG of every page of the app into docs/screenshots/ (``python scripts/screenshots.py``).

Starts ``streamlit run app.py`` on a free port, drives headless Chromium through the demo
flow (load demo, project, pick a truth column) so the pages have content, and saves one
1280x800 screenshot per page. The helpers are also used by the browser tests
(``tests/app/test_browser*.py``, ``test_deeplinks.py``, ``test_load.py``).

Every wait is for a condition, never for a time: pages come from :func:`new_context`, whose
init script (:data:`TRACK_RUNS`) counts the app's rerun requests and script runs, so
:func:`wait_idle` knows whether the run an action asked for has ended; :func:`wait_plots`
waits for Plotly to have drawn the charts.
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
#: Charts each page draws at least after the demo flow (the screenshot waits for them).
PLOTS = {"Reference": 2, "Data": 1, "Project": 1, "Clusters": 2, "Annotation": 2}
SLOW_MS = 240_000  # first projection in a fresh environment compiles numba code
#: Follows, in the page, the app's script runs, so that waits need no pause. It counts the
#: rerun requests the app sends on its websocket (a ``BackMsg`` whose ``rerun_script``, field
#: 11, makes the first byte 0x5A) and, for every ``script_finished`` message received
#: (``ForwardMsg`` field 6), notes its status and how many requests had been sent by then.
#: Status 2 means the script stopped only to rerun (``st.rerun``, ``st.switch_page``). A
#: socket opened before the tracker (installed late) is followed by the page's script state
#: instead: how many requests had been sent when it last turned "notRunning".
TRACK_RUNS = """(() => {
  if (window.__scembedRuns) return;
  const runs = window.__scembedRuns =
    {requested: 0, ended: -1, state: null, finished: null, finishedAt: -1, listening: false};
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset)
      : data instanceof ArrayBuffer ? new Uint8Array(data) : null;
    if (bytes && bytes.length && bytes[0] === 0x5a) runs.requested += 1;
    return send.call(this, data);
  };
  const finishedStatus = (buffer) => {  // top-level field 6 (varint) of a ForwardMsg
    const b = new Uint8Array(buffer);
    let i = 0;
    const varint = () => {
      let value = 0, shift = 0, byte;
      do { byte = b[i++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; }
      while (byte & 0x80 && i < b.length);
      return value;
    };
    while (i < b.length) {
      const tag = varint(), wire = tag & 7;
      if (wire === 0) { const value = varint(); if (tag >> 3 === 6) return value; }
      else if (wire === 2) { const length = varint(); i += length; }
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else return null;
    }
    return null;
  };
  const Native = window.WebSocket;
  const Tracked = function (...args) {
    const socket = new Native(...args);
    runs.listening = true;
    socket.addEventListener("message", (event) => {
      if (!(event.data instanceof ArrayBuffer)) return;
      const status = finishedStatus(event.data);
      if (status === null) return;
      runs.finished = status;
      runs.finishedAt = runs.requested;
    });
    return socket;
  };
  Tracked.prototype = Native.prototype;
  for (const name of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Tracked[name] = Native[name];
  window.WebSocket = Tracked;
  const look = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    const state = app ? app.getAttribute("data-test-script-state") : null;
    if (state === runs.state) return;
    runs.state = state;
    if (state === "notRunning") runs.ended = runs.requested;
  };
  new MutationObserver(look).observe(document, {
    subtree: true, childList: true, attributes: true,
    attributeFilter: ["data-test-script-state"],
  });
  look();
})()"""
#: True once the app is not running, every rerun request sent has had its run finish, and
#: the last run did not stop only to rerun.
_RUNS_DONE = """() => {
  const runs = window.__scembedRuns;
  const answered = runs.listening ? runs.finishedAt : runs.ended;
  return runs.state === "notRunning" && answered === runs.requested && runs.finished !== 2;
}"""
#: The number of Plotly charts drawn (laid out, with their SVG) on the page.
_PLOTS_DRAWN = """() => [...document.querySelectorAll(".js-plotly-plot")]
  .filter(g => g._fullLayout && g.querySelector(".main-svg")).length"""


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


def new_context(browser, **options):
    """A browser context (1280x800 unless ``options`` say otherwise) that tracks script runs.

    Every page of it counts the app's rerun requests and runs (:data:`TRACK_RUNS`), which
    :func:`wait_idle` reads; use it for every page a test drives.
    """
    context = browser.new_context(**{"viewport": VIEWPORT, **options})
    context.add_init_script(TRACK_RUNS)
    return context


def wait_idle(page, timeout: int = SLOW_MS) -> None:
    """Wait until the run the last action asked for is over and nothing else runs.

    The app must have stopped running after the last rerun request was sent (so a rerun
    that has not started yet is waited for), the 'Running...' status widget must be gone and
    the script state not running (the status widget alone can be gone before a rerun has
    replaced stale elements). A page not made by :func:`new_context` gets the tracker now,
    which only sees the requests sent from here on.
    """
    page.evaluate(TRACK_RUNS)
    page.wait_for_function(_RUNS_DONE, timeout=timeout)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout
    )


def wait_plots(page, at_least: int = 1, timeout: int = SLOW_MS) -> int:
    """Wait until Plotly has drawn at least ``at_least`` charts; return how many are drawn."""
    page.wait_for_function(f"() => ({_PLOTS_DRAWN})() >= {int(at_least)}", timeout=timeout)
    return int(page.evaluate(_PLOTS_DRAWN))


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
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    combo = page.get_by_role("combobox", name=re.compile(re.escape(label_text)))
    wanted = page.get_by_role("option", name=option, exact=True)
    deadline = time.monotonic() + timeout / 1000
    while True:
        wait_idle(page, timeout)
        combo.click()
        combo.fill(option)  # typing filters the list and opens it
        try:
            # a rerun that lands meanwhile (a component reporting its value) closes the
            # list: open it again rather than wait for an option that is gone
            wanted.click(timeout=10_000)
            break
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")
    wait_idle(page, timeout)


def take_screenshots(out: Path) -> list[Path]:
    """Run the demo flow and save one PNG per page into ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with running_app() as url, sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = new_context(browser).new_page()
        open_app(page, url)
        run_demo_flow(page)
        for title in PAGES:
            go_to(page, title)
            if title in FOCUS:
                anchor = page.get_by_text(FOCUS[title]).first
                anchor.evaluate("e => e.scrollIntoView({block: 'start'})")
            if title in PLOTS:
                wait_plots(page, PLOTS[title])
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
