"""Hugging Face hub access, tested offline against a hub cache laid out on disk.

No test reaches the network: every test runs with ``HF_HUB_OFFLINE`` set (in the environment
and in ``huggingface_hub.constants``), the cache and token paths point into ``tmp_path``,
and the cache is built file by file the way huggingface_hub writes it
(``models--OWNER--NAME/{refs,blobs,snapshots/<commit>}``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_hub import FakeHub

from scembed_core import hub
from scembed_core.errors import (
    HubUnavailableError,
    ModelFormatError,
    ParameterError,
    UnpinnedRevisionWarning,
    UntrustedSourceError,
)
from scembed_core.formats.geniml import read_geniml_model
from scembed_core.hub import (
    KNOWN_HUB_MODELS,
    HubReference,
    detect_reference_format,
    fetch_hub_model,
    load_hub_reference,
    model_card,
    parse_hub_spec,
    push_bundle,
    render_model_card,
)

TINY = Path(__file__).parent / "data" / "geniml_tiny"
APP = Path(__file__).resolve().parents[1] / "app.py"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "owner/name"


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch) -> Path:
    """Offline mode, an empty cache and no token, all inside ``tmp_path``."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    return cache


def cache_repo(
    cache: Path,
    source: Path,
    *,
    repo_id: str = REPO,
    files: tuple[str, ...] | None = None,
    refs: tuple[str, ...] = ("main",),
) -> Path:
    """Lay ``source``'s files out as huggingface_hub caches a downloaded snapshot."""
    owner, name = repo_id.split("/")
    repo = cache / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / COMMIT
    for folder in (repo / "blobs", repo / "refs", snapshot):
        folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.name == "expected_weight.npy" or (files is not None and path.name not in files):
            continue
        data = path.read_bytes()
        if path.suffix in {".pt", ".safetensors", ".bin"}:  # LFS files: etag = sha256
            etag = hashlib.sha256(data).hexdigest()
        else:  # regular git files: etag = git blob sha1
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / etag).write_bytes(data)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", etag))
    for ref in refs:
        (repo / "refs" / ref).write_text(COMMIT)  # huggingface_hub writes no newline
    return snapshot


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    return np.load(TINY / "expected_weight.npy", allow_pickle=False)[:60]


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("hf:databio/r2v-luecken2021-hg38-v2", ("databio/r2v-luecken2021-hg38-v2", None)),
        (f"hf:owner/name@{COMMIT}", ("owner/name", COMMIT)),
        ("hf:Owner_1/my.model@v1.0", ("Owner_1/my.model", "v1.0")),
        ("  hf:owner/name@refs/pr/3 ", ("owner/name", "refs/pr/3")),
    ],
)
def test_parse_hub_spec(spec, parsed):
    assert parse_hub_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "databio/r2v",
        "hf:",
        "hf:nameonly",
        "hf:a/b/c",
        "hf:owner/name@",
        "hf:owner/na me",
        "hf:owner/-name",
        "hf:own--er/name",
        "hf:owner/name@../x",
        "https://huggingface.co/owner/name",
    ],
)
def test_parse_hub_spec_rejects(spec):
    with pytest.raises(ParameterError, match="hf:"):
        parse_hub_spec(spec)


def test_fetch_from_cache_warns_unpinned_and_gives_the_snapshot(offline_hub, expected):
    snapshot = cache_repo(offline_hub, TINY)
    with pytest.warns(UnpinnedRevisionWarning, match=r"hf:owner/name@<commit>"):
        folder = fetch_hub_model("hf:owner/name")  # default cache: HF_HUB_CACHE
    assert folder == snapshot
    model = read_geniml_model(folder)
    assert model.metadata["format"] == "geniml-safetensors"
    np.testing.assert_array_equal(model.vectors, expected)
    bed = [line.split("\t") for line in (folder / "universe.bed").read_text().splitlines()]
    np.testing.assert_array_equal(model.universe.start, [int(row[1]) for row in bed])
    np.testing.assert_array_equal(model.universe.end, [int(row[2]) for row in bed])


def test_fetch_pinned_revision_does_not_warn(tmp_path):
    cache = tmp_path / "explicit-cache"
    snapshot = cache_repo(cache, TINY, refs=("main", "v1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fetch_hub_model(f"hf:owner/name@{COMMIT}", cache_dir=cache) == snapshot
        assert fetch_hub_model("hf:owner/name@v1", cache_dir=cache) == snapshot


def test_checkpoint_only_repository(offline_hub, expected):
    cache_repo(offline_hub, TINY, files=("config.yaml", "universe.bed", "checkpoint.pt"))
    folder = fetch_hub_model(f"hf:owner/name@{COMMIT}")
    model = read_geniml_model(folder)
    assert model.metadata["format"] == "geniml-checkpoint"
    np.testing.assert_array_equal(model.vectors, expected)


def test_offline_with_empty_cache_points_to_alternatives():
    with pytest.raises(HubUnavailableError) as info:
        fetch_hub_model(f"hf:owner/name@{COMMIT}")
    message = str(info.value)
    assert "could not be reached" in message and "offline mode" in message
    assert "local cache" in message
    assert "--reference path/to/folder" in message
    assert "built-in reference (--reference default)" in message


def test_offline_with_unknown_branch(offline_hub):
    cache_repo(offline_hub, TINY)
    with pytest.raises(HubUnavailableError, match="owner/name"):
        fetch_hub_model("hf:owner/name@dev")


def test_offline_mode_is_read_at_call_time(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert hub.is_offline()  # environment says 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not hub.is_offline()


def test_progress_reports_start_and_end(offline_hub):
    cache_repo(offline_hub, TINY)
    calls = []
    fetch_hub_model(f"hf:owner/name@{COMMIT}", progress=lambda f, m: calls.append((f, m)))
    assert calls[0][0] == 0.0 and calls[-1][0] == 1.0
    assert "owner/name" in calls[-1][1]


#: Run in a child process so that huggingface_hub reads HF_ENDPOINT at import, as for a user.
FETCH_WITH_PROGRESS = """
import json, sys
from scembed_core.hub import fetch_hub_model
calls = []
folder = fetch_hub_model(sys.argv[1], progress=lambda f, m: calls.append((f, m)))
print(json.dumps({"folder": str(folder), "calls": calls}))
"""


#: ``FakeHub`` delays (seconds before the headers, before the body) of two downloads:
#: - together: every file starts at once and they complete one after another, so the bytes
#:   fraction climbs (about 0.01, 0.40, 1.0 of the bytes);
#: - staggered: config.yaml is complete before model.safetensors starts, which is still
#:   arriving when universe.bed starts and completes, so huggingface_hub's bytes total grows
#:   during the download; the fraction reported must still never go back.
DOWNLOADS = {
    "together": {"config.yaml": (0, 0.5), "universe.bed": (0, 1.0), "model.safetensors": (0, 1.5)},
    "staggered": {"model.safetensors": (0.5, 0.6), "universe.bed": (0.8, 0.0)},
}


@pytest.mark.parametrize("timing", list(DOWNLOADS))
def test_progress_follows_a_real_download(tmp_path, expected, timing):
    """huggingface_hub's own snapshot_download, from a hub on 127.0.0.1, drives the callback."""
    files = {p.name: p.read_bytes() for p in TINY.iterdir() if p.name != "expected_weight.npy"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"))
    env["PYTHONPATH"] = os.pathsep.join([str(APP.parent), env.get("PYTHONPATH", "")])
    delays = DOWNLOADS[timing]
    with FakeHub(REPO, COMMIT, files, delays=delays) as server:
        env["HF_ENDPOINT"] = server.endpoint
        done = subprocess.run(
            [sys.executable, "-c", FETCH_WITH_PROGRESS, f"hf:{REPO}@main"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    resolved = [p for m, p in server.requests if m == "GET" and "/resolve/" in p]
    fetched = sorted(p.rsplit("/", 1)[1] for p in resolved)
    assert fetched == ["config.yaml", "model.safetensors", "universe.bed"]  # no .pt: a twin
    assert ("GET", f"/api/models/{REPO}/revision/main") in server.requests

    calls = [tuple(call) for call in result["calls"]]
    assert calls[0] == (0.0, f"Fetching {REPO} from the Hugging Face hub")
    assert calls[-1] == (1.0, f"{REPO} is in the local cache")
    downloading = calls[1:-1]
    assert len(downloading) >= len(fetched), "every file's bytes reach the callback"
    assert all(m.startswith(f"Downloading {REPO}: ") for _, m in downloading), downloading
    fractions = [f for f, _ in downloading]
    assert fractions == sorted(fractions), f"progress goes backwards: {fractions}"
    assert fractions[0] > 0.02 and fractions[-1] == pytest.approx(0.98)
    if timing == "together":  # a fraction for each file, as its bytes are written
        assert len(set(fractions)) >= 3 and fractions[0] < 0.1 and 0.3 < fractions[1] < 0.5
    megabytes = sum(len(files[name]) for name in fetched) / 1e6
    assert downloading[-1][1] == f"Downloading {REPO}: {megabytes:.1f} of {megabytes:.1f} MB"

    folder = Path(result["folder"])
    assert folder == tmp_path / "hf-home" / "hub" / "models--owner--name" / "snapshots" / COMMIT
    np.testing.assert_array_equal(read_geniml_model(folder).vectors, expected)
    # and offline, from the cache huggingface_hub wrote
    assert load_hub_reference(f"hf:{REPO}@main") == HubReference(folder, "geniml")


def test_load_hub_reference_detects_formats(offline_hub, tmp_path):
    cache_repo(offline_hub, TINY)
    result = load_hub_reference(f"hf:owner/name@{COMMIT}")
    assert isinstance(result, HubReference)
    folder, fmt = result
    assert fmt == "geniml" and (folder / "config.yaml").is_file()

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"schema_version": 1, "genome": "hg19"}))
    (bundle / "universe.bed").write_text("chr1\t0\t100\n")
    cache_repo(offline_hub, bundle, repo_id="owner/bundle")
    assert load_hub_reference(f"hf:owner/bundle@{COMMIT}").format == "scembed-bundle"

    readme = tmp_path / "readme-only"
    readme.mkdir()
    (readme / "README.md").write_text("# nothing here\n")
    cache_repo(offline_hub, readme, repo_id="owner/empty")
    with pytest.raises(ModelFormatError, match=r"found README.md"):
        load_hub_reference(f"hf:owner/empty@{COMMIT}")


def test_load_hub_reference_gensim_needs_trust(offline_hub, tmp_path):
    from gensim.models import Word2Vec

    source = tmp_path / "gensim"
    source.mkdir()
    words = [["chr1_100_200", "chr1_300_400", "chr2_0_50"]] * 5
    Word2Vec(words, vector_size=4, min_count=1, workers=1, seed=0, epochs=1).save(
        str(source / "model.bin")
    )
    (source / "universe.bed").write_text("chr1\t100\t200\nchr1\t300\t400\nchr2\t0\t50\n")
    cache_repo(offline_hub, source)
    spec = f"hf:owner/name@{COMMIT}"
    with pytest.raises(UntrustedSourceError, match=r"--trust"):
        load_hub_reference(spec)
    folder, fmt = load_hub_reference(spec, trust=True)
    assert fmt == "geniml"
    assert read_geniml_model(folder, trust_pickle=True).trained.all()


def test_detect_reference_format_on_missing_folder(tmp_path):
    with pytest.raises(ModelFormatError, match="no files"):
        detect_reference_format(tmp_path / "absent")


def test_known_models_are_well_formed():
    """The catalog the Reference page offers: distinct, parseable, each naming its build."""
    assert KNOWN_HUB_MODELS, "the Reference page offers at least one hub model"
    repo_ids = [entry["repo_id"] for entry in KNOWN_HUB_MODELS]
    assert len({r.lower() for r in repo_ids}) == len(repo_ids), "repo ids are unique"
    for entry in KNOWN_HUB_MODELS:
        assert set(entry) == {"repo_id", "genome", "description"}
        assert parse_hub_spec("hf:" + entry["repo_id"]) == (entry["repo_id"], None)
        # the genome the app shows for (and stamps onto) the model is a UCSC build name and
        # the build the repository itself is named after
        genome = entry["genome"]
        assert re.fullmatch(r"(hg|mm)\d+", genome), entry
        assert genome in entry["repo_id"].split("/")[1].split("-"), entry
        description = entry["description"]
        assert description.strip() and "\n" not in description, entry


def test_reference_page_offers_the_catalog_and_loads_it(offline_hub):
    """Every catalog model is on the Reference page's hub picker, in order, with its genome
    and description, and loads (here from the local cache) as a reference of that genome."""
    from streamlit.testing.v1 import AppTest

    from scembed_app import cached, state

    for entry in KNOWN_HUB_MODELS:
        cache_repo(offline_hub, TINY, repo_id=entry["repo_id"])  # no genome in its config
    n_regions = len((TINY / "universe.bed").read_text().splitlines())
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    try:
        at.radio(key="reference_source").set_value("hub").run()
        picker = at.selectbox[0]
        assert picker.label == "Known models"
        assert picker.options == [entry["repo_id"] for entry in KNOWN_HUB_MODELS]
        for entry in KNOWN_HUB_MODELS:
            picker.set_value("hf:" + entry["repo_id"]).run()
            captions = [c.value for c in at.caption]
            assert f"{entry['genome']}: {entry['description']}" in captions
            next(b for b in at.button if b.label == "Load from the hub").click().run()
            assert not at.exception, [e.value for e in at.exception]
            assert not at.error, [e.value for e in at.error]
            assert at.session_state[state.REFERENCE_SPEC] == "hf:" + entry["repo_id"]
            metrics = {m.label: m.value for m in at.metric}
            assert metrics["Genome build"] == entry["genome"], entry
            assert metrics["Regions"] == f"{n_regions:,}"
            picker = at.selectbox[0]
    finally:
        cached.cached_reference.clear()  # process-wide: drop the references of this cache


MANIFEST = {
    "name": "Granja 2019 BMMC",
    "genome": "hg19",
    "source": "Granja et al. 2019, GSE139369 (BMMC_D6T1)",
    "label_keys": ["cell_type"],
    "label_counts": {"cell_type": {"CD14.Mono.1": 2077, "CD4.N1": 1573, "odd|label": 3}},
    "training": {"vector_size": 100, "window": 5, "epochs": 100},
    "training_stats": {"n_documents": 10335},
    "metrics": {"ari": 0.7123, "label_transfer": {"f1": 0.87}},
    "mapping_distance_q99": 0.25,
    "schema_version": 1,
    "library_version": "0.1.0",
    "n_cells": 10335,
    "n_regions": 10000,
    "embedding_dim": 100,
    "files": {"universe.bed": "ab" * 32},
}


def test_render_model_card():
    card = render_model_card(MANIFEST, repo_id="owner/granja")
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "scembed" and "hg19" in meta["tags"]
    assert body.lstrip().startswith("# Granja 2019 BMMC")
    assert "| Genome | hg19 |" in body
    assert "GSE139369" in body
    assert "`cell_type`" in body and "| CD14.Mono.1 | 2077 |" in body
    assert "odd\\|label" in body  # table cells are escaped
    assert "| vector_size | 100 |" in body and "| epochs | 100 |" in body
    assert "| ari | 0.7123 |" in body and "| label_transfer.f1 | 0.87 |" in body
    assert "| mapping_distance_q99 | 0.25 |" in body
    assert "hf:owner/granja@<commit>" in body
    assert "ab" * 32 in body


def test_model_card_is_huggingface_hubs_model_card():
    from huggingface_hub import ModelCard

    card = model_card({**MANIFEST, "license": "mit"}, repo_id="owner/granja")
    assert isinstance(card, ModelCard)
    assert card.data.to_dict() == {
        "library_name": "scembed",
        "license": "mit",
        "tags": ["scembed", "region2vec", "scATAC-seq", "single-cell", "hg19"],
    }
    again = ModelCard(render_model_card({**MANIFEST, "license": "mit"}, repo_id="owner/granja"))
    assert again.data.to_dict() == card.data.to_dict() and again.text == card.text
    assert card.text.lstrip().startswith("# Granja 2019 BMMC")


def test_render_model_card_minimal_and_flat_labels():
    card = render_model_card({"labels": {"B": 5}, "genome": "hg38"})
    assert "| B | 5 |" in card and "hf:OWNER/NAME" in card
    assert "## Training parameters" not in card
    assert "T, NK" in render_model_card({"labels": ["T", "NK"]})
    with pytest.raises(ParameterError):
        render_model_card(["not", "a", "dict"])


def bundle_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "to-push"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    (folder / "universe.bed").write_text("chr1\t0\t100\n")
    return folder


@pytest.mark.parametrize("repo_id", ["not a repo", "owner/name@v1", "a--b/c", "only-owner"])
def test_push_bundle_rejects_bad_repo_ids(tmp_path, repo_id):
    with pytest.raises(ParameterError):
        push_bundle(bundle_folder(tmp_path), repo_id, token="hf_dummy")


def test_push_bundle_validates_before_any_network_use(tmp_path):
    with pytest.raises(ParameterError, match="is not a folder"):
        push_bundle(tmp_path / "absent", REPO, token="hf_dummy")
    with pytest.raises(ModelFormatError, match="is not a reference"):
        push_bundle(tmp_path, REPO, token="hf_dummy")
    folder = bundle_folder(tmp_path)
    (folder / "link.bed").symlink_to(folder / "universe.bed")
    with pytest.raises(ParameterError, match="symbolic links"):
        push_bundle(folder, REPO, token="hf_dummy")
    (folder / "link.bed").unlink()
    with pytest.raises(ParameterError, match="HF_TOKEN"):
        push_bundle(folder, "hf:" + REPO)  # no token anywhere
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        push_bundle(folder, REPO, token="hf_dummy")


def test_engine_import_does_not_load_hub_or_torch():
    code = (
        "import sys, scembed_core.hub, scembed_core.formats.geniml; "
        "print(sorted(m for m in ('huggingface_hub', 'torch', 'gensim', 'safetensors') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
