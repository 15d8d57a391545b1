"""A biologist's first hour in a real browser (issue 23, items 3, 4 and 6).

Headless Chromium against one real ``streamlit run`` server whose workspaces live in a
temporary folder. The first two tests share one browser context (one user): the owner keeps
editing after a reload while another browser gets read-only; the Train page proposes the
cell-type column of a real dataset whose first label-like column is a cluster id, and its
progress bar moves during map fitting. The delete test has its own browser and analysis
("Delete this analysis now" removes the files from disk, and only those). Every context
comes from :func:`screenshots.new_context` (it tracks script runs for ``wait_idle``).
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

from scembed_app.owner import COOKIE  # noqa: E402
from scembed_app.workspace import WorkspaceStore, is_valid_id  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser_first_hour"),
    pytest.mark.skipif(
        not Path(screenshots.CHROMIUM).exists(), reason=f"{screenshots.CHROMIUM} not installed"
    ),
]

SLOW = screenshots.SLOW_MS
GRANJA = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
N_CELLS = 800
#: Training in a loaded server (numba compiles umap-learn's layout on its first fit) may
#: take minutes on a shared 2-core machine.
TRAIN_SECONDS = 900


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("workspaces")


@pytest.fixture(scope="module")
def server(root, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with screenshots.running_app(env={"SCEMBED_WORKSPACES": str(root)}, log_path=log) as url:
        yield {"url": url, "log": log}


@pytest.fixture(scope="module")
def labelled_upload(tmp_path_factory):
    """Real Granja cells whose obs lists cluster ids (initialClusters) before cell_type."""
    import anndata as ad
    import numpy as np

    adata = ad.read_h5ad(GRANJA)
    keep = np.random.default_rng(0).choice(adata.n_obs, N_CELLS, replace=False)
    subset = adata[np.sort(keep)].copy()
    columns = list(subset.obs.columns)
    assert columns.index("initialClusters") < columns.index("cell_type")
    path = tmp_path_factory.mktemp("upload") / "bmmc_subset.h5ad"
    subset.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def owner(browser):
    """One user's browser (cookies kept across reloads, as in a real browser)."""
    context = screenshots.new_context(browser)
    yield {"context": context, "page": context.new_page()}
    context.close()


def ws_of(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("ws")
    return values[-1] if values else None


def settle(page) -> None:
    screenshots.wait_idle(page)


def sidebar(page) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text(timeout=SLOW)


def no_traceback(page, log: Path) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]


def wait_for_cookie(context, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c["value"] for c in context.cookies() if c["name"] == COOKIE]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"the browser never received the {COOKIE} cookie")


def upload(page, path: Path) -> None:
    """Upload ``path`` on the Data page (the page shown)."""
    page.locator('input[type="file"]').first.set_input_files(str(path))
    page.get_by_text(f"Data: {N_CELLS:,} cells").first.wait_for(timeout=SLOW)
    settle(page)


def test_a_reload_keeps_editing_rights_and_others_get_read_only(
    server, browser, owner, root, labelled_upload
):
    context, page = owner["context"], owner["page"]
    screenshots.open_app(page, server["url"])
    screenshots.go_to(page, "Data")
    page.get_by_role("button", name="Load demo dataset").click()
    page.get_by_text("Peaks in universe").wait_for(timeout=SLOW)
    settle(page)
    ws_id = ws_of(page.url)
    assert is_valid_id(ws_id), page.url
    secret = wait_for_cookie(context)
    assert secret not in page.url and secret not in sidebar(page), "never in the link"
    assert secret not in (root / ws_id / "meta.json").read_text(), "only its hash is stored"

    page.reload()  # a new session of the same browser
    page.get_by_role("heading", name="Data", exact=True).first.wait_for(timeout=SLOW)
    settle(page)
    assert ws_of(page.url) == ws_id
    assert "read-only" not in sidebar(page), sidebar(page)
    upload(page, labelled_upload)  # a change: the owner's goes into the same analysis
    assert ws_of(page.url) == ws_id, "no fork for the owner"
    assert root.joinpath(ws_id).is_dir() and len(WorkspaceStore(root).ids()) == 1
    dataset = WorkspaceStore(root).open(ws_id).read_dataset()[0]
    assert dataset.n_obs == N_CELLS, "the owner's change was saved in place"

    other = screenshots.new_context(browser)  # someone else's browser
    try:
        viewer = other.new_page()
        viewer.goto(f"{server['url']}/data?ws={ws_id}")
        viewer.get_by_role("heading", name="Data", exact=True).first.wait_for(timeout=SLOW)
        settle(viewer)
        shared = viewer.locator('[data-testid="stSidebar"]').get_by_text("read-only")
        shared.first.wait_for(timeout=SLOW)
        assert not [c for c in other.cookies() if c["value"] == secret]
    finally:
        other.close()
    no_traceback(page, server["log"])


def test_the_train_page_proposes_cell_types_and_its_bar_moves_while_the_map_is_fitted(
    server, browser, labelled_upload
):
    context = screenshots.new_context(browser)  # its own browser: any test order works
    page = context.new_page()
    screenshots.open_app(page, server["url"])
    screenshots.go_to(page, "Data")
    upload(page, labelled_upload)  # obs lists cluster ids (initialClusters) before cell_type
    screenshots.go_to(page, "Train")
    choice = page.get_by_role("combobox", name=re.compile("Label column")).input_value()
    assert choice == "cell_type", choice
    form = page.locator('[data-testid="stForm"]').inner_text()
    assert not re.search(r"\d s per epoch", form), "no speed promised before anything ran"
    assert "measured on the first epoch" in form
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("1")
    epochs.press("Tab")
    page.get_by_role("button", name="Train reference").click()
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + TRAIN_SECONDS
    done = page.get_by_text(re.compile(r"^Trained my-reference"))
    while time.monotonic() < deadline:
        bar = page.locator('[data-testid="stProgress"]').first
        with contextlib.suppress(Exception):
            value = bar.get_by_role("progressbar").get_attribute("aria-valuenow", timeout=500)
            text = bar.inner_text(timeout=500)
            if not seen or seen[-1] != (value, text):
                seen.append((value, text))
        if done.count():
            break
        time.sleep(0.05)
    assert done.count(), seen[-5:]
    texts = [text for _, text in seen]
    assert any(t.startswith("Word2Vec: ") for t in texts), texts

    # the map is fitted beside the label stages: its progress shows beside theirs
    # ("... · map: layout epoch 40/500"), then in its own stage
    def map_part(text: str) -> str | None:
        if text.startswith("Fitting the reference map"):
            return text
        return text.split(" · map: ", 1)[1] if " · map: " in text else None

    shown = {map_part(text) for text in texts} - {None}
    assert len(shown) >= 3, f"the map's progress is shown while it runs: {seen}"
    assert any("layout epoch" in m for m in shown), f"its layout epochs too: {seen}"
    assert any("Label classifier" in t for t in texts), texts
    values = [float(v) for v, _ in seen if v is not None]
    assert values == sorted(values), "the bar never goes back"
    settle(page)
    trained = page.locator('[data-testid="stMarkdownContainer"]', has_text="labels from")
    assert "labels from cell_type" in trained.first.inner_text()
    no_traceback(page, server["log"])
    context.close()


def demo_analysis(page, url: str) -> str:
    """Open the app in ``page``, load the demo (a new analysis) and return its id."""
    screenshots.open_app(page, url)
    screenshots.go_to(page, "Data")
    page.get_by_role("button", name="Load demo dataset").click()
    page.get_by_text("Peaks in universe").wait_for(timeout=SLOW)
    settle(page)
    return ws_of(page.url)


def test_delete_removes_the_files_at_once(server, browser, root):
    context = screenshots.new_context(browser)  # its own browser: its own analysis
    try:
        page = context.new_page()
        ws_id = demo_analysis(page, server["url"])
        assert is_valid_id(ws_id) and (root / ws_id).is_dir(), page.url
        wait_for_cookie(context)
        others = set(WorkspaceStore(root).ids()) - {ws_id}
        screenshots.go_to(page, "About")
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert "7 days after the analysis was last changed" in text
        assert "Anyone who has its link" in text
        page.get_by_role("button", name="Delete this analysis now").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Delete permanently").click()
        page.get_by_text("The analysis was deleted from this server").first.wait_for(timeout=SLOW)
        settle(page)
        assert not (root / ws_id).exists(), sorted(p.name for p in root.iterdir())
        assert set(WorkspaceStore(root).ids()) == others, "only this analysis is deleted"
        assert all((root / other).is_dir() for other in others)
        assert ws_of(page.url) is None
        screenshots.go_to(page, "Data")
        assert set(WorkspaceStore(root).ids()) == others, "nothing writes the analysis again"
        page.goto(f"{server['url']}/clusters?ws={ws_id}")  # the old link
        page.get_by_role("heading", name="Analysis not found").first.wait_for(timeout=SLOW)
        no_traceback(page, server["log"])
    finally:
        context.close()
