"""``make bench-cold``: the app's first seconds in a real browser, against Streamlit's floor.

Every figure is a wall time in headless Chromium (Debian's ``/usr/bin/chromium`` through
Playwright) against a real ``streamlit run`` server started fresh for each repeat, up to the
first animation frame on which the chart is laid out and visible, read from the page's clock
(:data:`CHART_CLOCK`; Playwright's wait, used before 2026-12-05, saw it up to 0.5 s late):

* **floor**: a one-chart Streamlit app (``import streamlit``, ``st.plotly_chart`` of a
  scatter of as many points as the reference map; the app's server settings, no source
  watcher), from starting the server to its chart drawn. Streamlit's own cold start: nothing a Streamlit app does can be faster.
* **first chart**: ``streamlit run app.py`` started, landing page opened, its first Plotly
  chart drawn.
* **reload**: the same tab reloaded once the landing page is drawn and the server's
  background warm-ups are done (its CPU idle), to its first chart; then the page's link
  opened in a **new tab** (a new renderer process: the scripts come from the disk cache but
  are compiled again) and in a **new browser profile** (nothing cached). The floor app's
  figures for these are Streamlit's own time for each path.
* **project**: on a fresh server, Data -> "Load demo dataset", Project (the server's
  background warm-ups left to finish, as while a user reads the page) -> "Project cells",
  from the click to the map drawn (the 1,550-cell demo), then the same for 3,790 cells
  (the demo uploaded 2.45 times over as an .h5ad: 3,790 rows).
* **server RSS** after the 3,790-cell projection (the server process and its children).
* **share link**: that analysis's tab reloaded (the URL names its workspace: the analysis
  is restored from it), then its URL opened in a new tab of the same browser (a link opened
  again) and in a new browser profile (a colleague's first visit), each to the Project
  page's map drawn from the restored workspace; after the server's CPU is idle.

The browser is launched before the server so its own start is not counted. The floor and
the app run interleaved, so both see the same machine load; medians of ``--repeats``.
Writes the ``bench-cold`` section of BENCHMARKS.md and ``benchmarks/results/cold.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import screenshots  # noqa: E402

COMMAND = "make bench-cold"
TIMEOUT_MS = 240_000

#: Installed in every page the benchmark opens: the page's own clock of when it first shows
#: a chart. On every animation frame (a 50 ms timer where a hidden page gets none), until
#: one is found, it looks for a visible Plotly chart
#: (a non-empty box, not hidden: Playwright's test of "visible") that was not on the page
#: when the watch was armed, and keeps the wall-clock time of that frame, in ms since the
#: epoch, as ``window.__scembedChart``. ``window.__scembedArm()`` re-arms it (before a click).
#: Playwright's own ``wait_for``, which timed the figures before, re-checks the page every
#: 500 ms once it has waited 0.3 s, so it saw a chart up to half a second after it was drawn.
CHART_CLOCK = """(() => {
  if (window.__scembedArm) return;
  let before = new WeakSet(), armed = 0;
  const shown = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && el.checkVisibility({visibilityProperty: true});
  };
  const watch = (id) => {
    if (id !== armed) return;
    for (const el of document.querySelectorAll('.js-plotly-plot')) {
      if (!before.has(el) && shown(el)) {
        window.__scembedChart = performance.timeOrigin + performance.now();
        return;
      }
    }
    next(id);
  };
  // The next animation frame; a timer too, for a page that gets no frames (a hidden tab).
  const next = (id) => {
    let done = false;
    const go = () => { if (!done) { done = true; watch(id); } };
    requestAnimationFrame(go);
    setTimeout(go, 50);
  };
  window.__scembedArm = () => {
    before = new WeakSet(document.querySelectorAll('.js-plotly-plot'));
    window.__scembedChart = null;
    armed += 1;
    next(armed);
  };
  window.__scembedArm();
})();"""
#: The floor app's ``.streamlit/config.toml``: the server settings the app runs with that
#: change the server's work (its own config has them too), so the floor stays a floor.
FLOOR_CONFIG = """[server]
headless = true
runOnSave = false
fileWatcherType = "none"

[browser]
gatherUsageStats = false
"""
FLOOR_APP = """
import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
rng = np.random.default_rng(0)
xy = rng.normal(size=(8785, 2))
st.plotly_chart(go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers")))
"""


def _rss(pid: int) -> int:
    import psutil

    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


@contextlib.contextmanager
def _server(app: Path):
    """A fresh ``streamlit run`` of ``app``; yields (url, process, start time).

    An ``app.py`` of another checkout (``--baseline``) runs in that checkout, with its own
    packages first on ``PYTHONPATH``.
    """
    root = app.parent
    env = {"PYTHONPATH": str(root)} if root != ROOT and (root / "scembed_app").is_dir() else None
    started = time.time()
    with screenshots.running_server(env=env, app=app, cwd=root) as (url, process):
        yield url, process, started


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    import psutil

    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def _wait_server_idle(pid: int, *, quiet: float = 0.05, window: float = 0.5) -> None:
    """Wait until the server's background warm-ups are done: past their start (they wait
    ``scembed_app.state.WARMUP_DELAY_S`` after the first page) and then until it used <
    ``quiet`` CPU seconds in ``window`` s (at most 60 s). A page opened afterwards meets a
    server in use, as every visitor but the first does."""
    from scembed_app.state import WARMUP_DELAY_S

    time.sleep(3.0 + WARMUP_DELAY_S)
    deadline = time.perf_counter() + 60
    last = _cpu(pid)
    while time.perf_counter() < deadline:
        time.sleep(window)
        now = _cpu(pid)
        if now - last < quiet:
            return
        last = now


def _new_context(browser):
    context = browser.new_context(viewport=screenshots.VIEWPORT)
    context.add_init_script(CHART_CLOCK)
    return context


def _chart_drawn(page, since: float) -> tuple[float, float]:
    """Seconds from ``since`` (``time.time()``) to the page's new chart: its own clock, Playwright's.

    Waits for the chart as Playwright sees it, then reads the frame the page painted it on
    (:data:`CHART_CLOCK`); both are returned, the page's first.
    """
    page.locator(".js-plotly-plot").locator("visible=true").first.wait_for(timeout=TIMEOUT_MS)
    polled = time.time() - since
    page.wait_for_function("() => window.__scembedChart", timeout=TIMEOUT_MS)
    return page.evaluate("window.__scembedChart") / 1000 - since, polled


def measure_start(browser, app: Path) -> dict:
    """Server start -> first chart, then a reload -> first chart, in one fresh server."""
    with _server(app) as (url, process, started):
        context = _new_context(browser)
        page = context.new_page()
        page.goto(url)
        first, first_polled = _chart_drawn(page, started)
        cpu_first = _cpu(process.pid)
        screenshots.wait_idle(page)
        _wait_server_idle(process.pid)  # its background warm-ups done: a server in use
        cpu0, t0 = _cpu(process.pid), time.time()
        page.reload()
        reload, reload_polled = _chart_drawn(page, t0)
        cpu_reload = _cpu(process.pid) - cpu0
        opened = _open_elsewhere(browser, page, process.pid)
        context.close()
    return {
        "first_chart_s": first,
        "reload_s": reload,
        "first_chart_polled_s": first_polled,
        "reload_polled_s": reload_polled,
        "server_cpu_at_first_chart_s": cpu_first,
        "server_cpu_reload_s": cpu_reload,
        **opened,
    }


def _open_elsewhere(
    browser, page, pid: int, names: tuple[str, str] = ("new_tab", "new_profile"), ready=None
) -> dict:
    """The page's URL opened in a new tab, then in a new browser profile, each once drawn.

    A new tab is a new renderer process (the app's scripts come from the disk cache but are
    compiled again); a new profile downloads them too: a colleague's first visit. Each after
    the server's CPU is idle. ``ready(page, t0)`` waits for the page and returns its
    seconds (the page's clock, Playwright's): :func:`_chart_drawn` by default. Returns
    ``{name}_s``, ``{name}_polled_s`` and ``server_cpu_{name}_s`` for the two ``names``.
    """
    ready = ready or _chart_drawn
    out = {}
    link = page.url
    for name, context in zip(names, (page.context, None), strict=True):
        screenshots.wait_idle(page)
        _wait_server_idle(pid)
        context = context or _new_context(browser)
        other = context.new_page()
        cpu0, t0 = _cpu(pid), time.time()
        other.goto(link)
        out[f"{name}_s"], out[f"{name}_polled_s"] = ready(other, t0)
        out[f"server_cpu_{name}_s"] = _cpu(pid) - cpu0
        other.close()
        if context is not page.context:
            context.close()
    return out


def _project_and_wait(page, n_cells: int) -> float:
    """Click "Project cells": seconds to the map drawn (the page's clock)."""
    page.evaluate("window.__scembedArm()")
    t0 = time.time()
    page.get_by_role("button", name=re.compile("Project cells")).click()
    done = re.compile(rf"^Projected {n_cells:,} cells in")
    page.get_by_text(done).first.wait_for(timeout=TIMEOUT_MS)
    return _chart_drawn(page, t0)[0]


def _big_query(folder: Path) -> Path:
    """The demo query repeated to 3,790 cells, written as an .h5ad to upload."""
    import anndata as ad

    from scembed_core.reference import DEMO_QUERY_PATH

    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    reps = -(-3790 // demo.n_obs)
    big = ad.concat([demo] * reps, index_unique="-")[:3790].copy()
    path = folder / "query_3790.h5ad"
    big.write_h5ad(path)
    return path


def measure_project(browser, big: Path, app: Path = ROOT / "app.py") -> dict:
    """Click "Project cells" -> map drawn, demo then 3,790 cells, on one fresh server."""
    with _server(app) as (url, process, _):
        context = _new_context(browser)
        page = context.new_page()
        screenshots.open_app(page, url)
        screenshots.go_to(page, "Data")
        page.get_by_role("button", name=re.compile("Load demo dataset")).click()
        page.get_by_text("Peaks in universe").wait_for(timeout=TIMEOUT_MS)
        screenshots.wait_idle(page)
        screenshots.go_to(page, "Project")
        _wait_server_idle(process.pid)  # a user reads the page first: warm-ups done
        demo = _project_and_wait(page, 1550)
        screenshots.wait_idle(page)
        tab = "Embedding layout" if "Embedding layout" in page.content() else "Embedding UMAP"
        page.evaluate("window.__scembedArm()")
        t0 = time.time()
        page.get_by_role("tab", name=tab).click()
        try:
            umap_demo = _chart_drawn(page, t0)[0]
            screenshots.wait_idle(page)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: recorded, not fatal
            umap_demo = None  # shown as "timed out"

        screenshots.go_to(page, "Data")
        page.locator('input[type="file"]').first.set_input_files(str(big))
        page.get_by_text("3,790").first.wait_for(timeout=TIMEOUT_MS)
        screenshots.wait_idle(page)
        screenshots.go_to(page, "Project")
        large = _project_and_wait(page, 3790)
        screenshots.wait_idle(page)
        rss = _rss(process.pid)
        shared = _open_share_link(browser, page, process.pid)
        context.close()
    return {
        "project_demo_s": demo,
        "embedding_layout_demo_s": umap_demo,
        "project_3790_s": large,
        "server_rss_after_3790_bytes": rss,
        **shared,
    }


def _restored(page, t0: float) -> tuple[float, float]:
    """Wait for the restored 3,790-cell analysis's map; as :func:`_chart_drawn`."""
    done = re.compile(r"^Projected 3,790 cells in")
    page.get_by_text(done).first.wait_for(timeout=TIMEOUT_MS)
    return _chart_drawn(page, t0)


def _open_share_link(browser, page, pid: int) -> dict:
    """The analysis's link (the URL holds its workspace id): its tab reloaded, then opened
    elsewhere (:func:`_open_elsewhere`: ``reopen_3790``, a new tab; ``share_link_3790``, a
    new browser profile, a colleague's first visit).

    Each time the server restores the 3,790-cell analysis from its workspace and draws the
    Project page's map; ``None`` (not measured) for an app without workspace links.
    """
    link = page.url
    if "ws=" not in link:
        return {"reopen_3790_s": None, "share_link_3790_s": None}
    page.wait_for_timeout(1000)  # the workspace save after the last run
    _wait_server_idle(pid)
    cpu0, t0 = _cpu(pid), time.time()
    page.reload()  # the same tab: its analysis restored from the workspace the URL names
    out = dict(zip(("reload_3790_s", "reload_3790_polled_s"), _restored(page, t0), strict=True))
    out["server_cpu_reload_3790_s"] = _cpu(pid) - cpu0
    return out | _open_elsewhere(browser, page, pid, ("reopen_3790", "share_link_3790"), _restored)


def main(argv: list[str] | None = None) -> dict:
    """Measure, print, and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-project", action="store_true")
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="only the CPU seconds before the first chart (no browser; section bench-cold-cpu)",
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--label", default="this code")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of the code before (e.g. `git worktree add /tmp/base main`): its "
        "app.py is measured in the same run, interleaved",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="write the section from saved results (benchmarks/results/cold.json) instead",
    )
    args = parser.parse_args(argv)
    from . import report as rp

    if args.from_json:
        return write_report(json.loads(args.from_json.read_text()), args)
    if args.cpu_only:
        return cpu_section(args.repeats * 2 + 1, args.baseline)
    from playwright.sync_api import sync_playwright

    facts = rp.machine_facts()
    results: dict = {
        "facts": facts,
        "floor": [],
        "app": [],
        "project": [],
        "baseline": [],
        "baseline_project": [],
    }
    base_app = args.baseline / "app.py" if args.baseline else None
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        floor_app = Path(tmp) / "floor.py"
        floor_app.write_text(FLOOR_APP)
        (Path(tmp) / ".streamlit").mkdir()  # the app's server settings: no source watcher
        (Path(tmp) / ".streamlit" / "config.toml").write_text(FLOOR_CONFIG)
        browser = screenshots.launch_browser(playwright)
        try:
            for _ in range(args.repeats):
                results["floor"].append(measure_start(browser, floor_app))
                results["app"].append(measure_start(browser, ROOT / "app.py"))
                if base_app is not None:
                    results["baseline"].append(measure_start(browser, base_app))
                print(
                    results["floor"][-1], results["app"][-1], results["baseline"][-1:], flush=True
                )
                if not args.no_write:  # partial results survive a failed step
                    rp.save_results("cold", results)
            if not args.skip_project:
                big = _big_query(Path(tmp))
                for _ in range(max(1, args.repeats - 1)):
                    results["project"].append(measure_project(browser, big))
                    print(results["project"][-1], flush=True)
                    if base_app is not None:
                        results["baseline_project"].append(measure_project(browser, big, base_app))
                        print("baseline", results["baseline_project"][-1], flush=True)
        finally:
            browser.close()

    return write_report(results, args)


def write_report(results: dict, args: argparse.Namespace) -> dict:
    """Print the table and write the ``bench-cold`` section and ``results/cold.json``."""
    from . import report as rp

    facts = results["facts"]

    def med(rows: list[dict], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(values) if values else None

    floor = med(results["floor"], "first_chart_s")
    target = max(2.5, 1.5 * floor)

    def cell(rows: list[dict], key: str, scale: float = 1.0, unit: str = "s") -> str:
        value = med(rows, key)
        if value is None:
            timed_out = any(key in r for r in rows)  # measured, but never drawn
            return f"timed out (> {TIMEOUT_MS // 1000} s)" if timed_out else "-"
        digits = 0 if unit == "MiB" else 2
        shown = ", ".join(
            "timed out" if r.get(key) is None else f"{r[key] / scale:.{digits}f}" for r in rows
        )
        return f"**{value / scale:.{digits}f} {unit}** ({shown})"

    starts = [
        ("server start -> first chart", "first_chart_s", f"<= {target:.2f} s"),
        ("server CPU time (user+sys) at the first chart", "server_cpu_at_first_chart_s", "-"),
        ("reload -> first chart", "reload_s", "<= 2.0 s"),
        ("server CPU time of the reload", "server_cpu_reload_s", "-"),
        ("its link opened in a new tab -> first chart", "new_tab_s", "-"),
        ("its link in a new browser profile (nothing cached) -> first chart", "new_profile_s", "-"),
    ]
    rows = [
        [
            what,
            cell(results["floor"], key),
            cell(results["baseline"], key),
            cell(results["app"], key),
            goal,
        ]
        for what, key, goal in starts
    ]
    clicks = [
        ('"Project cells" -> map, demo (1,550 cells)', "project_demo_s", 1.0, "s", "<= 1.0 s"),
        (
            '"Embedding" tab (UMAP before, layout after), 1,550 cells',
            "embedding_layout_demo_s",
            1.0,
            "s",
            "<= 3 s (3,790)",
        ),
        ('"Project cells" -> map, 3,790 cells', "project_3790_s", 1.0, "s", "<= 1.5 s"),
        (
            "3,790-cell analysis, its tab reloaded (restored from the workspace) -> map",
            "reload_3790_s",
            1.0,
            "s",
            "<= 2.0 s",
        ),
        ("server CPU time of that reload", "server_cpu_reload_3790_s", 1.0, "s", "-"),
        (
            "3,790-cell analysis reopened from its link, new tab -> map",
            "reopen_3790_s",
            1.0,
            "s",
            "<= 2.0 s (share link)",
        ),
        ("server CPU time of the reopened link", "server_cpu_reopen_3790_s", 1.0, "s", "-"),
        (
            "the same link in a new browser profile (cold browser cache) -> map",
            "share_link_3790_s",
            1.0,
            "s",
            "<= 2.0 s (share link)",
        ),
        (
            "server RSS after the 3,790-cell projection",
            "server_rss_after_3790_bytes",
            2**20,
            "MiB",
            "<= 500 MiB",
        ),
    ]
    #: the floor app's link opened the same way: Streamlit's own time for that path
    floor_of = {"reopen_3790_s": "new_tab_s", "share_link_3790_s": "new_profile_s"}
    for what, key, scale, unit, goal in clicks:
        rows.append(
            [
                what,
                cell(results["floor"], floor_of[key]) if key in floor_of else "-",
                cell(results["baseline_project"], key, scale, unit),
                cell(results["project"], key, scale, unit),
                goal,
            ]
        )
    table = rp.table(
        rows,
        ["what (headless Chromium)", "floor app", "before", "after", "target"],
    )
    print(table)
    results["label"] = args.label
    if not args.no_write:
        body = "\n\n".join(
            [
                "## `make bench-cold`: first chart, clicks and reload in a real browser",
                rp.command(COMMAND),
                __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
                f"Medians (runs in brackets) of {args.repeats} fresh servers each. "
                f"**after** = {args.label}; **before** = "
                f"{args.baseline or 'not measured'}; the clicks run "
                f"{max(1, args.repeats - 1)} time(s) each."
                + (f" **Note:** {results['note']}." if results.get("note") else ""),
                table,
                rp.facts_block(facts),
            ]
        )
        rp.replace_section("bench-cold", body)
        rp.save_results("cold", results)
    return results


# --------------------------------------------------------------------------- CPU to first chart

#: What each app computes before its first chart leaves the server, as plain Python: the
#: imports, the data and the figure serialised as ``st.plotly_chart`` does (``to_json``).
PRE_CHART = {
    "floor": (
        "import numpy as np, plotly.graph_objects as go, streamlit as st\n"
        "xy = np.random.default_rng(0).normal(size=(8785, 2))\n"
        "go.Figure(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode='markers')).to_json()\n"
    ),
    "after": (
        "import streamlit as st\n"
        "from scembed_app import router, workspaces, cached, deployment, figures, guards\n"
        "from scembed_app import quickref, state, widgets\n"
        "s = quickref.quick_summary('default')\n"
        "figures.count_bar(s.label_counts('cell_type')).to_json()\n"
    ),
    "before": (
        "import streamlit as st\n"
        "from scembed_app import router, workspaces, cached, catalog, deployment, figures\n"
        "from scembed_app import guards, state, widgets\n"
        "from scembed_core.reference import resolve_reference\n"
        "r = resolve_reference('default')\n"
        "figures.count_bar(r.label_counts('cell_type')).to_json()\n"
    ),
}


def pre_chart_cpu(kind: str, root: Path) -> dict:
    """CPU and wall seconds of ``PRE_CHART[kind]`` in a fresh interpreter run in ``root``."""
    import os
    import subprocess

    code = (
        "import resource, time\n"
        "t = time.perf_counter()\n"
        + PRE_CHART[kind]
        + "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(u.ru_utime + u.ru_stime, time.perf_counter() - t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    cpu, wall = map(float, out.stdout.split()[-2:])
    return {"cpu_s": cpu, "wall_s": wall}


def cpu_section(repeats: int, baseline: Path | None) -> dict:
    """Measure :data:`PRE_CHART` interleaved ``repeats`` times; write ``bench-cold-cpu``."""
    from . import report as rp

    facts = rp.machine_facts()
    roots = {"floor": ROOT, "after": ROOT}
    if baseline is not None:
        roots["before"] = baseline
    runs: dict[str, list[dict]] = {kind: [] for kind in roots}
    for _ in range(repeats):
        for kind, root in roots.items():
            runs[kind].append(pre_chart_cpu(kind, root))
    rows = []
    floor_cpu = statistics.median(r["cpu_s"] for r in runs["floor"])
    names = {
        "floor": "floor: one-chart app (streamlit, plotly, 8,785 points)",
        "before": "scEmbed before: app modules, full reference, count bar",
        "after": "scEmbed after: app modules, compact map, count bar",
    }
    for kind in ("floor", "before", "after"):
        if kind not in runs:
            continue
        cpu = [r["cpu_s"] for r in runs[kind]]
        wall = [r["wall_s"] for r in runs[kind]]
        rows.append(
            [
                names[kind],
                f"**{statistics.median(cpu):.2f} s** ({', '.join(f'{v:.2f}' for v in cpu)})",
                f"{statistics.median(cpu) / floor_cpu:.2f}x",
                f"{statistics.median(wall):.2f} s",
            ]
        )
    table = rp.table(
        rows, ["fresh interpreter", "CPU (user+sys), median (runs)", "vs floor", "wall, median"]
    )
    print(table)
    body = "\n\n".join(
        [
            "## `python -m benchmarks.cold --cpu-only`: CPU seconds before the first chart",
            rp.command("python -m benchmarks.cold --cpu-only --baseline BEFORE_CHECKOUT"),
            "What each app computes before its first chart leaves the server, run as plain "
            "Python in a fresh interpreter (`PRE_CHART` in `benchmarks/cold.py`): the imports, "
            "the data and the first figure serialised as `st.plotly_chart` does. CPU time, "
            "unlike wall time, is little affected by other jobs on the machine, so this is "
            "the figure to compare when the machine is busy; the browser figures above add "
            "the server's own start and the page's paint, the same for every app. "
            f"Interleaved, {repeats} runs each.",
            table,
            rp.facts_block(facts),
        ]
    )
    rp.replace_section("bench-cold-cpu", body)
    results = {"facts": facts, "runs": runs}
    rp.save_results("cold_cpu", results)
    return results


if __name__ == "__main__":
    main()
