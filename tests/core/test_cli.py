"""The command line, end to end on the real demo query and the built-in reference."""

import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
from conftest import PBMC_TINY, REPO

from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scembed_core", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def test_default_reference_is_complete():
    reference = load_default_reference()
    assert reference.genome == "hg19"
    assert reference.can_ev_project and reference.can_transfer_labels
    assert reference.label_counts("cell_type").size == 16
    assert (
        reference.manifest["holdout"]["n_query_cells"]
        == ad.read_h5ad(DEMO_QUERY_PATH, backed="r").n_obs
    )


@pytest.mark.slow
def test_project_demo_query_end_to_end(tmp_path):
    out = tmp_path / "demo.h5ad"
    done = run_cli(
        "project",
        str(DEMO_QUERY_PATH),
        "--reference",
        "default",
        "--out",
        str(out),
        "--n-clusters",
        "16",
        "--truth-key",
        "cell_type",
        "--csv",
    )
    assert done.returncode == 0, done.stderr
    result = ad.read_h5ad(out)
    assert result.obsm["X_scembed"].shape == (result.n_obs, 100)
    assert np.isfinite(result.obsm["X_scembed_umap"]).all()
    evaluation = result.uns["scembed"]["evaluation"]
    # held-out real bone-marrow cells: 16 fine-grained types; LSI + kNN reaches ~0.70 here
    assert evaluation["labels"]["accuracy"] >= 0.65
    assert evaluation["clustering"]["ari"] >= 0.25
    assert result.obs["scembed_cluster"].nunique() >= 12
    assert (tmp_path / "demo.csv").is_file()
    assert "projected" in done.stdout
    # the default is the reference's classifier, with a probability for every class
    assert result.uns["scembed"]["params"]["label_method"] == "classifier"
    classes = list(result.uns["scembed"]["label_classes"])
    assert len(classes) == 16
    probabilities = result.obsm["scembed_label_probabilities"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    header = (tmp_path / "demo.csv").read_text().splitlines()[0].split(",")
    assert [f"scembed_prob_{c}" for c in classes] == [h for h in header if "_prob_" in h]


def test_label_method_knn_gives_the_old_labels(tmp_path):
    from scembed_core.io import read_dataset
    from scembed_core.labels.assign import assign_labels
    from scembed_core.project import project

    out = tmp_path / "knn.h5ad"
    args = ["project", str(DEMO_QUERY_PATH), "--out", str(out), "--no-ev"]
    done = run_cli(*args, "--label-method", "knn")
    assert done.returncode == 0, done.stderr
    result = ad.read_h5ad(out)
    assert result.uns["scembed"]["params"]["label_method"] == "knn"
    reference = load_default_reference()
    projection = project(read_dataset(DEMO_QUERY_PATH), reference, ev=False)
    old = assign_labels(  # with the cells' coverage, as the command line (the Unknown rule)
        projection.embedding,
        reference,
        method="knn",
        neighbors=projection.neighbors,
        n_regions=projection.coverage.n_regions_per_cell,
    )
    assert list(result.obs["scembed_label"].astype(str)) == list(old["label"])
    np.testing.assert_allclose(result.obs["scembed_label_confidence"], old["confidence"])


def test_info_prints_manifest():
    done = run_cli("info", "default")
    assert done.returncode == 0, done.stderr
    assert "genome:     hg19" in done.stdout and "CD14.Mono.1" in done.stdout


def test_bad_input_gives_one_line_error(tmp_path):
    bad = tmp_path / "cells.pkl"
    bad.write_bytes(b"\x80\x04not really")
    done = run_cli("project", str(bad), "--reference", "default", "--out", str(tmp_path / "o.h5ad"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    missing = run_cli("info", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_genome_mismatch_is_reported(tmp_path):
    done = run_cli(
        "project", str(PBMC_TINY), "--reference", "default", "--out", str(tmp_path / "o.h5ad")
    )
    assert done.returncode == 0, done.stderr
    # detected as hg38 and lifted onto the hg19 reference; overlap stays low (1,000 random
    # peaks against a sparse 10,000-region universe) and the warning says so
    assert "peaks from hg38 to hg19" in done.stdout
    assert "even after lifting them from hg38" in done.stderr


def test_train_writes_a_loadable_bundle(tmp_path, planted):
    source = tmp_path / "planted.h5ad"
    planted.write_h5ad(source)
    out = tmp_path / "bundle"
    done = run_cli(
        "train",
        str(source),
        "--labels-key",
        "cell_type",
        "--out",
        str(out),
        "--epochs",
        "5",
        "--dim",
        "8",
        "--min-count",
        "2",
        "--window",
        "10",
    )
    assert done.returncode == 0, done.stderr
    info = run_cli("info", str(out))
    assert info.returncode == 0 and "type0" in info.stdout
