"""Hostile reference bundles (attack run 2026-12, section 2): a closed world, typed refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scembed_core.errors import ReferenceBundleError
from scembed_core.reference import load_bundle
from scembed_core.reference.core import DEFAULT_REFERENCE_DIR


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A copy of the built-in bundle the test may tamper with (and re-sign)."""
    folder = tmp_path / "ref"
    shutil.copytree(DEFAULT_REFERENCE_DIR, folder)
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _resign(folder: Path, name: str) -> None:
    _edit_manifest(folder, lambda m: m["files"].__setitem__(name, _sha(folder / name)))


@pytest.mark.parametrize(
    "name",
    [
        "/etc/hostname",
        "../../../../etc/passwd",
        "/proc/self/environ",
        "/etc/does-not-exist",
        "sub/../../x",
        "..",
        "a\\..\\b",
    ],
)
def test_a_manifest_naming_a_file_outside_is_refused_before_opening_it(bundle, name):
    target = Path("/etc/hostname")
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(name, "0" * 64))
    with pytest.raises(ReferenceBundleError, match="not a plain file name inside") as info:
        load_bundle(bundle)
    text = str(info.value)
    assert "missing" not in text and "mismatch" not in text
    if target.is_file():  # no hash of the outside file, at any length
        assert _sha(target)[:8] not in text


def test_a_correctly_signed_outside_file_is_refused_too(bundle):
    target = Path("/etc/hostname")
    if not target.is_file():
        pytest.skip("no /etc/hostname here")
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(str(target), _sha(target)))
    with pytest.raises(ReferenceBundleError, match="not a plain file name"):
        load_bundle(bundle)


def test_a_link_out_of_the_bundle_gives_one_refusal_whether_the_target_exists_or_not(bundle):
    messages = []
    for target in ("/etc/hostname", "/etc/no-such-file-here"):
        link = bundle / "extra.txt"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        _edit_manifest(bundle, lambda m: m["files"].__setitem__("extra.txt", "0" * 64))
        with pytest.raises(ReferenceBundleError, match="link to a file outside") as info:
            load_bundle(bundle)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_a_hub_cache_snapshot_may_link_to_its_own_blobs(tmp_path):
    from scembed_core.reference.files import bundle_file

    repo = tmp_path / "models--o--n"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("x")
    snap = repo / "snapshots" / "0123"
    snap.mkdir(parents=True)
    (snap / "universe.bed").symlink_to("../../blobs/abc")
    assert bundle_file(snap, "universe.bed").read_text() == "x"
    (snap / "evil.bed").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ReferenceBundleError, match="outside"):
        bundle_file(snap, "evil.bed")


@pytest.mark.parametrize(
    ("content", "match"),
    [([1, 2, 3], "JSON object"), ({"schema_version": None}, "schema version")],
)
def test_a_manifest_of_the_wrong_type_is_a_typed_error(bundle, content, match):
    manifest = json.loads((bundle / "manifest.json").read_text())
    if isinstance(content, dict):
        content = {**manifest, **content}
    (bundle / "manifest.json").write_text(json.dumps(content))
    with pytest.raises(ReferenceBundleError, match=match):
        load_bundle(bundle)


@pytest.mark.parametrize("files", [["universe.bed"], {"universe.bed": None}, {"x": 5}])
def test_manifest_files_of_the_wrong_type_are_a_typed_error(bundle, files):
    _edit_manifest(bundle, lambda m: m.__setitem__("files", files))
    with pytest.raises(ReferenceBundleError, match="sha256"):
        load_bundle(bundle)


def test_a_checksum_mismatch_names_the_file_but_prints_no_hash(bundle):
    with open(bundle / "universe.bed", "a") as handle:
        handle.write("chr1\t1\t2\n")
    with pytest.raises(ReferenceBundleError, match="Checksum mismatch for universe.bed") as info:
        load_bundle(bundle)
    assert _sha(bundle / "universe.bed")[:12] not in str(info.value)


def test_nan_region_vectors_are_refused(bundle):
    vectors = np.load(bundle / "region_vectors.npy")
    vectors[:] = np.nan
    np.save(bundle / "region_vectors.npy", vectors)
    _resign(bundle, "region_vectors.npy")
    with pytest.raises(ReferenceBundleError, match="NaN or infinity"):
        load_bundle(bundle)


def test_an_object_array_in_a_bundle_is_a_typed_error_and_never_unpickled(bundle):
    np.save(bundle / "regions_trained.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _resign(bundle, "regions_trained.npy")
    with pytest.raises(ReferenceBundleError, match="object arrays"):
        load_bundle(bundle)


def test_a_truncated_cells_file_is_a_typed_error(bundle):
    cells = bundle / "cells.h5ad"
    cells.write_bytes(cells.read_bytes()[: cells.stat().st_size // 2])
    _resign(bundle, "cells.h5ad")
    with pytest.raises(ReferenceBundleError, match="truncated or corrupt"):
        load_bundle(bundle)


def test_a_bundle_universe_with_end_before_start_is_refused(bundle):
    lines = (bundle / "universe.bed").read_text().splitlines()
    lines[0] = "chr1\t898551\t898501"
    (bundle / "universe.bed").write_text("\n".join(lines) + "\n")
    _resign(bundle, "universe.bed")
    with pytest.raises(ReferenceBundleError, match="universe"):
        load_bundle(bundle)


def test_an_npy_header_declaring_more_than_the_file_holds_is_refused(bundle):
    path = bundle / "regions_trained.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(3, dtype=bool))
    header["shape"] = (10**12,)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 3)
    _resign(bundle, "regions_trained.npy")
    with pytest.raises(ReferenceBundleError, match="not a readable numeric array"):
        load_bundle(bundle)
