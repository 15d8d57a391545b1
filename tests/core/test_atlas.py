"""Out-of-core projection with Dask (scembed_core.atlas), checked against the in-memory path.

The Dask runs use an in-process LocalCluster (2 workers x 1 thread): the demo query then
projects in ~2 s, where fresh worker processes would spend most of a minute importing the
stack, loading the reference and compiling UMAP. The worker processes of the default local
cluster are exercised by ``make bench-scale``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from sklearn.metrics import adjusted_rand_score

from scembed_core.atlas import (
    MARKERS_KEY,
    chunk_markers,
    cluster_large,
    open_result,
    project_out_of_core,
)
from scembed_core.cluster import build_knn_graph, louvain
from scembed_core.errors import CountValueError, InputFormatError, ParameterError
from scembed_core.io import read_dataset
from scembed_core.labels.assign import assign_labels, cluster_table, label_classes, probabilities_of
from scembed_core.labels.clusters import cluster_majority
from scembed_core.labels.vote import UNASSIGNED
from scembed_core.pipeline import run_pipeline
from scembed_core.project import ev_project, project
from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.xdist_group("scale")

CHUNK = 400  # the demo query's 1,550 cells make 4 chunks, the last one partial


@pytest.fixture(scope="module")
def reference():
    return load_default_reference()


@pytest.fixture(scope="module")
def in_memory(reference):
    adata = read_dataset(DEMO_QUERY_PATH)
    projection = project(adata, reference)
    labels = assign_labels(
        projection.embedding,
        reference,
        neighbors=projection.neighbors,
        n_regions=projection.coverage.n_regions_per_cell,
    )
    return adata, projection, labels


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def store(tmp_path_factory, reference, client):
    out = tmp_path_factory.mktemp("scale") / "demo.zarr"
    summary = project_out_of_core(
        DEMO_QUERY_PATH, reference, out, chunk_size=CHUNK, scheduler=client
    )
    return out, summary


def _copy(store, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store[0], copy)
    return copy


def test_results_equal_the_in_memory_path(store, in_memory):
    out, summary = store
    adata, projection, labels = in_memory
    assert summary["n_chunks"] == 4 and summary["n_chunks_computed"] == 4
    assert summary["max_worker_peak_rss_bytes"] > 0 and summary["driver_peak_rss_bytes"] > 0
    result = ad.read_zarr(out)  # a plain AnnData store
    assert list(result.obs_names) == list(adata.obs_names)
    assert result.obs["cell_type"].equals(adata.obs["cell_type"])  # input obs carried over
    np.testing.assert_array_equal(result.obsm["X_scembed"], projection.embedding)
    if projection.analysis is not None:
        np.testing.assert_array_equal(result.obsm["X_scembed_whitened"], projection.analysis)
    np.testing.assert_array_equal(
        result.obs["scembed_n_regions"], projection.coverage.n_regions_per_cell
    )
    np.testing.assert_array_equal(
        result.obs["scembed_label"].astype(str).to_numpy(), labels["label"].to_numpy()
    )
    np.testing.assert_allclose(
        result.obs["scembed_label_confidence"], labels["confidence"], rtol=1e-6
    )
    np.testing.assert_allclose(
        result.obsm["scembed_label_probabilities"], probabilities_of(labels), rtol=1e-5
    )
    assert list(result.uns["scembed"]["label_classes"]) == label_classes(labels)
    np.testing.assert_allclose(
        result.obs["scembed_mapping_distance"], projection.mapping_distance, rtol=1e-5
    )
    np.testing.assert_array_equal(result.obs["scembed_mapping_outlier"], projection.mapping_outlier)
    scembed = result.uns["scembed"]
    assert scembed["coverage"]["n_cells"] == adata.n_obs
    assert scembed["project"]["params"]["chunk_size"] == CHUNK
    np.testing.assert_array_equal(
        result.obs["scembed_label_predicted"].astype(str), labels["predicted"].to_numpy()
    )


def test_umap_equals_the_same_chunks_in_memory(store, in_memory, reference):
    """Chunked map coordinates equal one big batch, bit for bit.

    EV-projection places every cell independently of the batch (its own mean distance,
    the largest possible membership weight, a fixed epoch count, a random stream from its
    own start), so chunks, subsets and reorderings give the same coordinates.
    """
    out, _ = store
    _, projection, _ = in_memory
    coords = ad.read_zarr(out).obsm["X_scembed_umap"]
    embedding = projection.embedding
    chunked = np.vstack(
        [ev_project(embedding[i : i + CHUNK], reference) for i in range(0, len(embedding), CHUNK)]
    )
    np.testing.assert_array_equal(coords, chunked)
    np.testing.assert_array_equal(coords, projection.umap)


def test_rerun_skips_done_chunks_and_redoes_a_cleared_one(store, reference, client, tmp_path):
    out = _copy(store, tmp_path)
    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    original = root["obsm/X_scembed"][:]
    root["obsm/X_scembed"][0:5] = 0.0  # chunk 0: marked done, so a rerun must not touch it
    root["obsm/X_scembed"][2 * CHUNK : 2 * CHUNK + 5] = 0.0
    root[MARKERS_KEY][2] = False  # chunk 2: not done
    summary = project_out_of_core(
        DEMO_QUERY_PATH, reference, out, chunk_size=CHUNK, scheduler=client
    )
    assert summary["resumed"]
    assert (summary["n_chunks_computed"], summary["n_chunks_skipped"]) == (1, 3)
    assert chunk_markers(out).all()
    again = ad.read_zarr(out).obsm["X_scembed"]
    np.testing.assert_array_equal(again[2 * CHUNK : 3 * CHUNK], original[2 * CHUNK : 3 * CHUNK])
    assert (again[0:5] == 0).all()  # skipped
    finished = project_out_of_core(
        DEMO_QUERY_PATH, reference, out, chunk_size=CHUNK, scheduler=client
    )
    assert finished["n_chunks_computed"] == 0 and finished["n_chunks_skipped"] == 4


def test_other_parameters_do_not_mix_into_an_existing_store(store, reference, tmp_path):
    out = _copy(store, tmp_path)
    with pytest.raises(ParameterError, match="k_neighbors"):
        project_out_of_core(DEMO_QUERY_PATH, reference, out, chunk_size=CHUNK, k_neighbors=5)
    with pytest.raises(ParameterError, match="unknown_rate"):
        project_out_of_core(DEMO_QUERY_PATH, reference, out, chunk_size=CHUNK, unknown_rate=0.2)
    with pytest.raises(ParameterError, match=".zarr"):
        project_out_of_core(DEMO_QUERY_PATH, reference, tmp_path / "x.h5ad")


def test_the_unknown_strictness_reaches_the_chunks(reference, in_memory, client, tmp_path):
    """``unknown_rate`` (run.json's, ``--unknown-rate``): the same Unknown cells as in memory."""
    adata, projection, _ = in_memory
    out = tmp_path / "strict.zarr"
    project_out_of_core(
        DEMO_QUERY_PATH, reference, out, chunk_size=800, scheduler=client, ev=False,
        unknown_rate=0.2,
    )  # fmt: skip
    expected = assign_labels(
        projection.embedding,
        reference,
        neighbors=projection.neighbors,
        n_regions=projection.coverage.n_regions_per_cell,
        unknown_rate=0.2,
    )
    result = ad.read_zarr(out)
    np.testing.assert_array_equal(result.obs["scembed_unknown"], expected["unknown"])
    assert expected["unknown"].mean() > 0.025  # 1.2% at the calibrated rate
    assert result.uns["scembed"]["params"]["unknown_rate"] == 0.2


def test_open_result_reads_a_sample_for_plotting(store):
    out, _ = store
    frame = open_result(out, max_points=300)
    assert len(frame) == 300 and frame.attrs == {"n_cells": 1550, "n_shown": 300}
    assert {"umap_1", "umap_2", "scembed_label", "scembed_mapping_distance"} <= set(frame)
    full = ad.read_zarr(out)
    positions = full.obs_names.get_indexer(frame.index)
    assert (np.diff(positions) > 0).all()  # store order
    np.testing.assert_array_equal(frame["umap_1"], full.obsm["X_scembed_umap"][positions, 0])
    np.testing.assert_array_equal(
        frame["scembed_label"].astype(str), full.obs["scembed_label"].astype(str).iloc[positions]
    )
    assert len(open_result(out, max_points=10_000)) == 1550


def test_cluster_large_is_louvain_below_the_sample_size(store, in_memory, reference, tmp_path):
    out = _copy(store, tmp_path)
    labels = cluster_large(out, n_sample=5_000)
    expected = louvain(build_knn_graph(in_memory[1].space), 1.0, seed=0)
    np.testing.assert_array_equal(labels, expected)
    result = ad.read_zarr(out)
    clusters = result.obs["scembed_cluster"].astype(str).to_numpy()
    np.testing.assert_array_equal(clusters, labels.astype(str))
    assert result.obs["scembed_cluster_label"].nunique() >= 5
    table = result.uns["scembed"]["scembed_cluster_label"]["cluster_table"]
    assert table["n_cells"].sum() == result.n_obs
    # every cluster's label, agreement and size equal the in-memory path's cluster table
    in_memory_clusters = np.where(expected >= 0, expected.astype(str), UNASSIGNED)
    memory = cluster_table(in_memory_clusters, in_memory[2], reference)
    assert len(memory) == len(table) == len(set(in_memory_clusters))
    assert list(table.columns) == list(memory.columns)
    for column in ("cluster", "label", "n_cells", "possibly_absent"):
        assert table[column].tolist() == memory[column].tolist(), column
    np.testing.assert_allclose(table["agreement"], memory["agreement"], rtol=1e-12)
    for column in ("median_confidence", "median_mapping_distance"):  # stored as float32
        np.testing.assert_allclose(table[column], memory[column], rtol=1e-5)
    # the same obs columns and uns steps as the in-memory writer (scembed_core.results)
    annotated = run_pipeline(in_memory[0], reference, resolution=1.0).adata
    assert {c for c in result.obs if c.startswith("scembed_")} == {
        c for c in annotated.obs if c.startswith("scembed_")
    }
    assert set(annotated.uns["scembed"]) - {"build_detection"} <= set(result.uns["scembed"])
    assert set(result.uns["scembed"]["params"]) == set(annotated.uns["scembed"]["params"])


def test_a_planted_tie_gets_the_same_cluster_label_in_memory_and_on_dask(store, tmp_path):
    out = _copy(store, tmp_path)
    clusters = cluster_large(out, n_sample=5_000)
    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    categories = [str(c) for c in root["obs/scembed_label/categories"][:]]
    first, second = sorted(c for c in categories if c != UNASSIGNED)[:2]
    codes = np.asarray(root["obs/scembed_label/codes"][:])
    members = np.flatnonzero(clusters == 0)
    half = len(members) // 2
    codes[members[:half]] = categories.index(second)  # the later name comes first
    codes[members[half : 2 * half]] = categories.index(first)
    codes[members[2 * half :]] = categories.index(UNASSIGNED)  # odd size: no vote
    root["obs/scembed_label/codes"][:] = codes
    zarr.consolidate_metadata(str(out), zarr_format=2)
    np.testing.assert_array_equal(cluster_large(out, n_sample=5_000), clusters)
    result = ad.read_zarr(out)
    dask_table = result.uns["scembed"]["scembed_cluster_label"]["cluster_table"]
    memory = cluster_majority(
        result.obs["scembed_cluster"].astype(str), result.obs["scembed_label"].astype(str)
    )
    assert dask_table.loc[0, "label"] == memory.loc[0, "label"] == first
    assert dask_table["label"].tolist() == memory["label"].tolist()
    np.testing.assert_allclose(dask_table["agreement"], memory["agreement"], rtol=1e-12)
    assert result.obs["scembed_cluster_label"][members[0]] == first


def test_cluster_large_on_a_subsample_agrees_with_full_louvain(in_memory):
    adata, projection, _ = in_memory
    full = louvain(build_knn_graph(projection.space), 1.0, seed=0)
    sampled = cluster_large(projection.space, n_sample=600, chunk_size=256)
    assert (sampled >= 0).all()
    # measured on seeds 0-2: ARI 0.74-0.83 against full Louvain; against the cell types
    # 0.50-0.55, where full Louvain reaches 0.56
    assert adjusted_rand_score(full, sampled) >= 0.6
    truth = adata.obs["cell_type"].astype(str)
    assert adjusted_rand_score(truth, sampled) >= 0.85 * adjusted_rand_score(truth, full)


def test_zarr_input_with_other_chunks(reference, client, in_memory, tmp_path):
    source = tmp_path / "demo_input.zarr"
    with ad.settings.override(zarr_write_format=3):  # the input may be zarr v3; we write v2
        ad.read_h5ad(DEMO_QUERY_PATH).write_zarr(source)
    out = tmp_path / "from_zarr.zarr"
    summary = project_out_of_core(source, reference, out, chunk_size=1_000, scheduler=client)
    assert summary["n_chunks"] == 2
    np.testing.assert_array_equal(ad.read_zarr(out).obsm["X_scembed"], in_memory[1].embedding)


def test_bad_inputs_fail_with_clear_errors(reference, client, tmp_path):
    adata = ad.read_h5ad(DEMO_QUERY_PATH)[:50].copy()
    adata.X = sp.csc_matrix(adata.X)
    csc = tmp_path / "csc.h5ad"
    adata.write_h5ad(csc)
    with pytest.raises(InputFormatError, match="CSC"):
        project_out_of_core(csc, reference, tmp_path / "a.zarr")
    adata.X = sp.csr_matrix(adata.X)
    negative = tmp_path / "negative.h5ad"
    adata.write_h5ad(negative)
    with h5py.File(negative, "r+") as handle:
        handle["X/data"][0] = -1.0
    with pytest.raises(CountValueError, match="negative"):
        project_out_of_core(negative, reference, tmp_path / "b.zarr", scheduler=client)


def test_command_line_dask_address(client, reference, tmp_path, monkeypatch):
    import scembed_core.reference.resolve as reference_module
    from scembed_core.cli import main

    monkeypatch.setattr(reference_module, "load_default_reference", lambda: reference)
    out = tmp_path / "cli.zarr"
    status = main(
        [
            "project",
            str(DEMO_QUERY_PATH),
            "--out",
            str(out),
            "--dask",
            client.scheduler.address,
            "--chunk-size",
            "800",
        ]
    )
    assert status == 0
    result = ad.read_zarr(out)
    assert result.obs["scembed_cluster"].nunique() >= 5
    assert result.uns["scembed"]["project"]["params"]["chunk_size"] == 800


def test_reference_without_a_folder_is_scattered(reference, in_memory, client, tmp_path):
    unsaved = dataclasses.replace(reference, path=None)  # e.g. trained in this session
    out = tmp_path / "scattered.zarr"
    project_out_of_core(DEMO_QUERY_PATH, unsaved, out, chunk_size=800, scheduler=client)
    result = ad.read_zarr(out)
    _, projection, labels = in_memory
    np.testing.assert_array_equal(result.obsm["X_scembed"], projection.embedding)
    np.testing.assert_array_equal(
        result.obs["scembed_label"].astype(str).to_numpy(), labels["label"].to_numpy()
    )


def test_app_opens_a_finished_store_and_draws_it(store):
    """The Atlas results page opens a .zarr result and draws (a sample of) its cells."""
    import json
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[2] / "app.py")
    at = AppTest.from_file(app, default_timeout=180)
    at.run()
    at.switch_page("pages/atlas.py").run()
    assert at.info, "empty state before a store is opened"
    at.text_input[0].input(str(store[0]))
    [b for b in at.button if b.label == "Open result"][0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cells in the store"] == f"{store[1]['n_cells']:,}"
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = sum(len(t.get("x", [])) for t in spec["data"] if t.get("name") != "reference")
    assert 0 < drawn <= store[1]["n_cells"]


def test_without_distributed_the_command_names_the_extra(tmp_path):
    """An install without the ``atlas`` extra: ``--dask`` says what to install, exit 2.

    ``sys.modules["distributed"] = None`` makes ``import distributed`` fail exactly as it
    does when the package is absent (the environment here has it installed).
    """
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from scembed_core.cli import main\n"
        f"sys.exit(main(['project', {str(DEMO_QUERY_PATH)!r}, '--dask', '--no-ev', "
        f"'--out', {str(tmp_path / 'out.zarr')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr and "scembed[atlas]" in done.stderr
    assert "Traceback" not in done.stderr


#: A Dask cluster in another process, standing in for a real one: it prints its scheduler's
#: address and runs until its stdin closes.
_CLUSTER_SCRIPT = """
import logging, sys
from distributed import LocalCluster
cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="2GiB",
                       dashboard_address=":0", silence_logs=logging.ERROR,
                       env={"NUMBA_NUM_THREADS": "1"})
print(cluster.scheduler_address, flush=True)
sys.stdin.read()
cluster.close()
"""


@pytest.fixture(scope="module")
def remote_address():
    """The address of a scheduler with a worker process, started in another process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=root,
    )
    try:
        address = process.stdout.readline().strip()
        assert address.startswith("tcp://"), f"the cluster process printed {address!r}"
        yield address
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_command_line_on_a_scheduler_in_another_process(remote_address, in_memory, tmp_path):
    """``project --dask tcp://...`` on a running scheduler equals the in-memory path.

    Its workers are separate processes, so they open the reference by path themselves (the
    compact form: no anndata imported there) instead of reusing the driver's copy.
    """
    from scembed_core.cli import main

    out = tmp_path / "remote.zarr"
    args = ["project", str(DEMO_QUERY_PATH), "--out", str(out), "--dask", remote_address]
    assert main([*args, "--chunk-size", "800"]) == 0
    result = ad.read_zarr(out)
    adata, projection, labels = in_memory
    assert list(result.obs_names) == list(adata.obs_names)
    np.testing.assert_array_equal(result.obsm["X_scembed"], projection.embedding)
    np.testing.assert_array_equal(result.obsm["X_scembed_umap"], projection.umap)
    np.testing.assert_array_equal(
        result.obs["scembed_label"].astype(str).to_numpy(), labels["label"].to_numpy()
    )
    np.testing.assert_allclose(
        result.obsm["scembed_label_probabilities"], probabilities_of(labels), rtol=1e-5
    )
    np.testing.assert_array_equal(result.obs["scembed_unknown"], labels["unknown"].to_numpy())
    assert result.uns["scembed"]["timings"]["hold_reference"] > 0  # every worker opened it
    with distributed.Client(remote_address) as client:
        imported = client.run(lambda: __import__("sys").modules.get("anndata") is not None)
    assert list(imported.values()) == [False]  # the reference was opened without it


def test_local_worker_processes_fork_from_a_preloaded_server(
    reference, in_memory, tmp_path, monkeypatch
):
    """The default local cluster (worker processes forked from a forkserver that imported
    the chunk code once, one numba thread each) gives the in-memory results, also when the
    caller's main script cannot be re-run (an AppTest's temporary script left as __main__
    in this process made every worker exit before)."""
    import types

    script = tmp_path / "not_rerunnable.py"
    script.write_text("raise NameError('a worker re-ran the caller main script')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    out = tmp_path / "local.zarr"
    summary = project_out_of_core(DEMO_QUERY_PATH, reference, out, chunk_size=800, n_workers=2)
    assert summary["n_chunks_computed"] == 2 and summary["timings"]["hold_reference"] > 0
    result = ad.read_zarr(out)
    _, projection, labels = in_memory
    np.testing.assert_array_equal(result.obsm["X_scembed"], projection.embedding)
    np.testing.assert_array_equal(result.obsm["X_scembed_umap"], projection.umap)
    np.testing.assert_array_equal(
        result.obs["scembed_label"].astype(str).to_numpy(), labels["label"].to_numpy()
    )
