"""Uploads after the attack run (2026-12): C3 (a failed file read again with the next), H13
(offline hub advice), and the upload's bytes leaving Streamlit's store once read."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_tools import goto
from streamlit.testing.v1 import AppTest

from scembed_app import deployment, state, widgets
from scembed_app.uploads import (
    load_path,
    load_uploads,
    read_spooled,
    spool_uploads,
    upload_digest,
)
from scembed_core.errors import HubUnavailableError, InputFormatError

pytestmark = pytest.mark.xdist_group("app")

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DEMO = Path(__file__).resolve().parents[2] / "scembed_core" / "data" / "demo_query.h5ad"


def test_two_datasets_uploaded_together_are_named_not_read_as_a_10x_folder():
    good = DEMO.read_bytes()
    with pytest.raises(InputFormatError, match="2 files were uploaded together") as info:
        load_uploads([("huge_coord_names.h5ad", b"not hdf5"), ("float.h5ad", good)])
    message = str(info.value)
    assert "huge_coord_names.h5ad, float.h5ad" in message and "one dataset at a time" in message
    assert "matrix.mtx file" not in message  # not the 10x folder reader's complaint (C3)


def test_an_upload_leaves_the_upload_store_once_read_and_a_failed_one_is_not_kept(monkeypatch):
    """The page releases each upload from Streamlit's store after reading it (C3, D7).

    AppTest builds a new store per run, so the store is observed right after the page's
    real release call, from inside the run.
    """
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    left: list[dict] = []
    release = widgets.release_uploads

    def observed(key: str) -> None:
        release(key)
        ctx = get_script_run_ctx()
        left.append({k: list(v) for k, v in ctx.uploaded_file_mgr.file_storage.items()})

    monkeypatch.setattr(widgets, "release_uploads", observed)
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    goto(at, state.PAGE_DATA)
    uploader = at.file_uploader(key="upload_files")
    uploader.set_value([("broken.h5ad", b"not an hdf5 file", "application/octet-stream")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "broken.h5ad" in " ".join(e.value for e in at.error)  # shown after the release
    assert left == [{"test session id": []}]  # the failed file left: never read again (C3)
    demo = DEMO.read_bytes()
    at.file_uploader(key="upload_files").set_value(
        [("demo.h5ad", demo, "application/octet-stream")]
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.session_state[state.DATASET].name == "demo.h5ad"
    assert left[-1] == {"test session id": []}  # the bytes left the store once read
    assert "Peaks in universe" in [m.label for m in at.metric]  # QC ran after the release


def test_a_spooled_upload_reads_as_the_file_and_leaves_no_folder_behind():
    """The page spools an upload to disk and drops the bytes before parsing (issue 22)."""
    import gc

    data = DEMO.read_bytes()
    spool = spool_uploads([("query.h5ad", data)])
    assert spool.folder.is_dir() and (spool.folder / "query.h5ad").read_bytes() == data
    assert spool.digest == upload_digest([("query.h5ad", data)])
    loaded = read_spooled(spool)
    assert not spool.folder.exists()  # removed once read
    direct = load_path(DEMO)
    assert loaded.sha256 == direct.sha256 and loaded.n_bytes == len(data)
    assert loaded.name == "query.h5ad"
    assert (loaded.adata.X != direct.adata.X).nnz == 0
    assert list(loaded.adata.obs_names) == list(direct.adata.obs_names)
    broken = spool_uploads([("broken.h5ad", b"not an hdf5 file")])
    with pytest.raises(InputFormatError):
        read_spooled(broken)
    assert not broken.folder.exists()  # a failed read leaves nothing on disk either
    abandoned = spool_uploads([("query.h5ad", data)])
    folder = abandoned.folder
    del abandoned  # e.g. a session that ended before its page read the upload
    gc.collect()
    assert not folder.exists()


def test_no_copy_of_an_uploaded_files_bytes_outlives_the_read():
    """Streamlit holds an upload in its store, in the uploader's cached value (sharing the
    store's bytes) and in the deep copy ``st.file_uploader`` returns: none survive the run."""
    import gc

    from streamlit.runtime.uploaded_file_manager import UploadedFile

    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    goto(at, state.PAGE_DATA)
    demo = DEMO.read_bytes()
    at.file_uploader(key="upload_files").set_value(
        [("demo.h5ad", demo, "application/octet-stream")]
    ).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[state.DATASET].name == "demo.h5ad"
    gc.collect()
    held = [f.name for f in gc.get_objects() if isinstance(f, UploadedFile) and f.getvalue()]
    assert held == []


@pytest.mark.parametrize("hosted", [True, False], ids=["hosted", "local"])
def test_offline_hub_advice_in_the_app_is_the_apps_own(monkeypatch, tmp_path, hosted):
    from huggingface_hub import constants

    from scembed_core.hub import fetch_hub_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HubUnavailableError) as info:
        fetch_hub_model("hf:databio/r2v-example@" + "0" * 40)
    assert "--reference path/to/folder" in str(info.value)  # the command line's advice (H13)
    assert info.value.repo_id == "databio/r2v-example"
    if hosted:
        monkeypatch.setenv(deployment.HOSTED_SWITCH, "1")
    else:
        monkeypatch.delenv(deployment.HOSTED_SWITCH, raising=False)
    text = widgets.engine_message(info.value)
    assert "databio/r2v-example" in text and "built-in reference" in text
    assert "--reference" not in text and str(tmp_path) not in text
    assert ("folder" in text) is not hosted  # a public deployment offers no folder source


def test_the_hosted_upload_limit_is_the_measured_one_and_the_data_page_says_it(monkeypatch):
    monkeypatch.delenv("SCEMBED_UPLOAD_MB", raising=False)
    monkeypatch.delenv(deployment.HOSTED_SWITCH, raising=False)
    assert deployment.upload_limit_mb() == deployment.LOCAL_UPLOAD_MB
    monkeypatch.setenv(deployment.HOSTED_SWITCH, "1")
    limit = deployment.upload_limit_mb()
    assert limit == deployment.HOSTED_UPLOAD_MB < deployment.LOCAL_UPLOAD_MB
    with pytest.raises(InputFormatError, match="is 3 MB; this server's limit is 2 MB"):
        load_uploads([("big.h5ad", b"\0" * 3 * 2**20)], max_bytes=2 * 2**20)
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    goto(at, state.PAGE_DATA)
    captions = " ".join(c.value for c in at.caption)
    assert f"Up to {limit} MB per upload on this public server" in captions
    monkeypatch.setenv("SCEMBED_UPLOAD_MB", "2000")  # a larger server, never above local
    assert deployment.upload_limit_mb() == deployment.LOCAL_UPLOAD_MB
