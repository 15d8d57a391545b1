"""Deep links on a fresh server: every page URL opened directly as the server's first request.

Streamlit starts an app with a top-level ``pages/`` folder in its legacy multipage mode and
leaves it only at the first ``st.navigation`` call in the process, so only the *first* request
a server sees shows the bug (``/data`` ran ``pages/data.py`` without the router: ``KeyError:
st.session_state has no key "upload_ids"``, under a navigation of file names). Each URL
therefore gets its own freshly started ``streamlit run`` server and a new browser context.

The servers start on the tiny geniml model of ``tests/data`` (``SCEMBED_REFERENCE``), which
loads in about a second: the built-in reference's UMAP model costs half a minute of numba
compilation per fresh process, six times over. The routing under test does not depend on the
reference; the full flow on the built-in one is ``test_browser.py``.
"""

from __future__ import annotations

import json
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

TINY_MODEL = ROOT / "tests" / "data" / "geniml_tiny"
#: URL path -> the page's heading (the root shows the default page, Reference). Each kind
#: of route once (a fresh server costs seconds): the root, the default page's legacy alias,
#: a page whose path is its title (``/data``, where the bug showed), pages whose path and
#: title differ, and the one outside the "Analyse" section. Every page's own script is
#: covered by the AppTests and the demo flow.
URLS = {
    "": "Reference",
    "reference": "Reference",
    "data": "Data",
    "annotate": "Annotation",
    "atlas": "Atlas results",
    "about": "About scEmbed",
}
#: Where the browser ends up: ``/reference`` (the legacy URL of pages/reference.py) is an
#: alias of the default page, which lives at the root.
FINAL_PATH = {"reference": ""}
#: The st.navigation sidebar: section headers and page titles, in order.
NAV_TITLES = [
    "Analyse",
    "Reference",
    "Data",
    "Project",
    "Clusters",
    "Annotation",
    "Build and share",
    "Train",
    "Export",
    "Atlas results",
    "Help",
    "About",
]

# The labels of every navigation on the page (icons left out), as JSON.
NAV_LABELS = """() => JSON.stringify(
  Array.from(document.querySelectorAll('[data-testid="stSidebarNav"]')).map(nav =>
    Array.from(nav.querySelectorAll(
      '[data-testid="stNavSectionHeader"], [data-testid="stSidebarNavLink"]'
    )).map(item => {
      const copy = item.cloneNode(true);
      copy.querySelectorAll('[data-testid="stIconMaterial"]').forEach(icon => icon.remove());
      return copy.textContent.trim();
    })))"""
# Every state the sidebar navigation had from the first byte of the page on: a navigation
# of file names (app, about, annotate, ...) that is replaced a moment later still counts.
RECORD_NAVIGATION = f"""
window.__navStates = [];
new MutationObserver(() => {{
  const state = ({NAV_LABELS})();
  const seen = window.__navStates;
  if (state !== "[]" && seen[seen.length - 1] !== state) seen.push(state);
}}).observe(document, {{childList: true, subtree: true, characterData: true}});
"""


@pytest.mark.parametrize("path", list(URLS), ids=[p or "root" for p in URLS])
def test_page_url_as_first_request_of_a_fresh_server(browser, path, tmp_path):
    log = tmp_path / "server.log"
    env = {"SCEMBED_REFERENCE": str(TINY_MODEL)}
    with screenshots.running_app(env=env, log_path=log) as url:
        context = screenshots.new_context(browser)
        try:
            page = context.new_page()
            page.add_init_script(RECORD_NAVIGATION)
            page.goto(f"{url}/{path}")  # the very first request this server answers
            heading = URLS[path]
            page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=60_000)
            page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
                timeout=60_000
            )
            screenshots.wait_idle(page, 60_000)

            server_log = log.read_text(errors="replace")
            exceptions = page.locator('[data-testid="stException"]')
            assert exceptions.count() == 0, server_log[-3000:]
            assert "Traceback" not in server_log, server_log[-3000:]
            assert page.get_by_text("Page not found").count() == 0

            assert json.loads(page.evaluate(NAV_LABELS)) == [NAV_TITLES]  # exactly one
            states = [json.loads(state) for state in page.evaluate("window.__navStates")]
            assert states, "the navigation was never drawn"
            for navs in states:  # drawn item by item, but never a second or another navigation
                assert len(navs) == 1 and set(navs[0]) <= set(NAV_TITLES), states

            assert page.locator("h1").first.inner_text().strip() == heading
            final = FINAL_PATH.get(path, path)
            assert page.url.rstrip("/") == f"{url}/{final}".rstrip("/")
        finally:
            context.close()
