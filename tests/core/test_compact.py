"""The compact reference map (scembed_core.compact): the landing page's map without anndata."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scembed_core.compact import COMPACT_FILES, read_summary
from scembed_core.errors import ReferenceBundleError
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle, save_reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_reference():
    """A small real reference with cells, a map and two label columns (no training)."""
    import anndata as ad
    import pandas as pd

    from scembed_core.evmap import MapParams
    from scembed_core.model import RegionModel
    from scembed_core.reference import Reference
    from scembed_core.regions import GenomicRegions

    rng = np.random.default_rng(0)
    n_regions, n_cells = 50, 120
    universe = GenomicRegions(
        np.array(["chr1"] * n_regions),
        np.arange(n_regions) * 1000,
        np.arange(n_regions) * 1000 + 500,
    )
    model = RegionModel(
        universe, rng.normal(size=(n_regions, 8)).astype(np.float32), np.ones(n_regions, bool)
    )
    kinds = np.array(["T", "B", "NK", "Mono"])
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(kinds[rng.integers(0, 4, n_cells)]),
            "group": [f"g{i % 3}" for i in range(n_cells)],
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    cells = ad.AnnData(
        obs=obs,
        obsm={
            "X_scembed": rng.normal(size=(n_cells, 8)).astype(np.float32),
            "X_umap": rng.normal(size=(n_cells, 2)).astype(np.float32),
        },
    )
    return Reference(
        model=model,
        cells=cells,
        map_params=MapParams(a=1.58, b=0.9),
        manifest={"name": "small", "genome": "test", "label_keys": ["cell_type", "group"]},
    )


def _same_view(summary, reference) -> None:
    assert summary.name == reference.name and summary.genome == reference.genome
    assert summary.n_cells == reference.n_cells and summary.n_regions == reference.n_regions
    assert summary.label_keys == reference.label_keys
    assert np.array_equal(summary.coords, reference.map_coords)
    for key in reference.label_keys:
        assert summary.label_counts(key).equals(reference.label_counts(key))
        assert list(summary.labels(key)) == list(reference.cells.obs[key].astype(str))


def test_the_built_in_bundle_has_a_compact_map_equal_to_its_cells():
    summary = read_summary(DEFAULT_REFERENCE_DIR)
    assert summary is not None
    assert isinstance(summary.coords, np.memmap)  # memory-mapped, not read
    _same_view(summary, load_bundle(DEFAULT_REFERENCE_DIR))


def test_save_reference_writes_it_and_an_older_bundle_has_none(tmp_path, small_reference):
    folder = save_reference(small_reference, tmp_path / "bundle").path
    assert set(COMPACT_FILES) <= set(json.loads((folder / "manifest.json").read_text())["files"])
    _same_view(read_summary(folder), load_bundle(folder))

    old = tmp_path / "old"  # a bundle written before the compact map existed
    shutil.copytree(folder, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for name in COMPACT_FILES:
        del manifest["files"][name]
        (old / name).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert read_summary(old) is None
    assert load_bundle(old).n_cells == small_reference.n_cells  # still loads


def test_a_modified_compact_file_is_refused(tmp_path, small_reference):
    folder = save_reference(small_reference, tmp_path / "bundle").path
    codes = np.load(folder / "map_label_codes.npy")
    np.save(folder / "map_label_codes.npy", codes[:, ::-1].copy())
    with pytest.raises(ReferenceBundleError, match="map_label_codes.npy"):
        read_summary(folder)
    with pytest.raises(ReferenceBundleError, match="Checksum mismatch"):
        load_bundle(folder)


def test_the_summary_reads_the_same_classifier_and_abilities_as_the_full_bundle(tmp_path):
    """The landing page's lower sections (abilities, classifier card, Unknown rule) come
    from the compact view; they must say what the full reference says."""
    summary = read_summary(DEFAULT_REFERENCE_DIR)
    reference = load_bundle(DEFAULT_REFERENCE_DIR)
    assert summary.can_ev_project == reference.can_ev_project is True
    assert summary.can_transfer_labels == reference.can_transfer_labels is True
    mine, theirs = summary.read_label_model(), reference.label_model
    assert mine.classes == theirs.classes and mine.params == theirs.params
    assert mine.calibration == theirs.calibration and mine.temperature == theirs.temperature
    assert np.array_equal(mine.coef, theirs.coef)
    from scembed_core.labels.loto import trust_calibration

    assert trust_calibration(summary) == trust_calibration(reference)

    copy = tmp_path / "bundle"  # a tampered classifier is refused, as the full loader does
    shutil.copytree(DEFAULT_REFERENCE_DIR, copy)
    meta = json.loads((copy / "label_model.json").read_text())
    meta["temperature"] = 0.01
    (copy / "label_model.json").write_text(json.dumps(meta))
    with pytest.raises(ReferenceBundleError, match="label_model.json"):
        read_summary(copy).read_label_model()


def test_reading_the_summary_imports_no_heavy_library():
    code = (
        "import sys; from scembed_core.compact import read_summary; "
        "from scembed_core._paths import DEFAULT_REFERENCE_DIR; "
        "s = read_summary(DEFAULT_REFERENCE_DIR); s.label_counts(); "
        "print(sorted(m for m in ('anndata', 'h5py', 'scipy', 'numba', 'sklearn', 'hnswlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_a_worker_opens_a_bundle_without_anndata_and_projects_the_same(small_reference, tmp_path):
    """``load_bundle(compact_cells=True)`` (a Dask worker's copy) labels like the full load."""
    from scembed_core.labels.assign import assign_labels
    from scembed_core.labels.vote import query_reference_neighbors

    folder = save_reference(small_reference, tmp_path / "bundle").path
    full = load_bundle(folder)
    light = load_bundle(folder, compact_cells=True)
    assert type(light.cells).__name__ == "CompactCells" and light.fingerprint == full.fingerprint
    for key in full.label_keys:
        assert list(light.cells.obs[key].astype(str)) == list(full.cells.obs[key].astype(str))
    np.testing.assert_array_equal(light.cell_space, full.cell_space)
    np.testing.assert_array_equal(light.map_coords, full.map_coords)
    query = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    votes = [
        assign_labels(query, ref, method="knn", neighbors=query_reference_neighbors(ref, query))
        for ref in (full, light)
    ]
    assert votes[0].equals(votes[1])

    old = tmp_path / "old"  # without the compact files: the cells are read in full
    shutil.copytree(folder, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for name in COMPACT_FILES:
        del manifest["files"][name]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert load_bundle(old, compact_cells=True).cells.obs.shape == full.cells.obs.shape
