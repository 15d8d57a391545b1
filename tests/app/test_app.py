"""App tests: every page renders, the demo flow end to end, bad uploads give st.error.

AppTest covers the glue unit tests cannot (navigation, session state, guards, caching);
the science is tested in the engine's own modules. All tests in this file run on one
xdist worker (``xdist_group``) so they share the process-wide Streamlit caches: the
built-in reference is loaded once. Every page of ``state.ALL_PAGES`` is smoke-tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from apptest_tools import button, goto, metric
from streamlit.testing.v1 import AppTest

from scembed_app import exports, figures, state
from scembed_app.uploads import LoadedDataset, load_upload, load_uploads, upload_digest
from scembed_core.errors import InputFormatError, ScEmbedError, UnsafeInputError
from scembed_core.palette import LINEAGE_COLORS, LINEAGE_SHADES

pytestmark = pytest.mark.xdist_group("app")

APP = str(Path(__file__).resolve().parents[2] / "app.py")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TIMEOUT = 180  # the first projection compiles numba code
PAGES = list(state.ALL_PAGES)


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_types(at: AppTest) -> list[set[str]]:
    """Trace types of every Plotly chart on the page."""
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    return [{trace.get("type", "scatter") for trace in spec["data"]} for spec in specs]


# --- every page, no data --------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=[Path(p).stem for p in PAGES])
def test_page_renders_without_data(page):
    at = goto(open_app(), page)
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"
    if page not in (state.PAGE_REFERENCE, state.PAGE_ABOUT):
        assert at.info, "pages that need data say what to do (st.info + page link)"
    # the sidebar summary is drawn even when the page stopped at a guard
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Data: none yet" in sidebar and "Not projected" in sidebar, sidebar


def test_reference_page_shows_default_reference():
    at = open_app()  # the Reference page is the default page
    assert at.title[0].value == "Reference"
    assert metric(at, "Genome build") == "hg19"
    assert int(metric(at, "Reference cells").replace(",", "")) > 1000
    assert {"bar"} in chart_types(at), "cell-type counts bar chart"
    assert {"scattergl"} in chart_types(at), "reference UMAP (WebGL)"
    # the label classifier's held-out calibration: reliability and accuracy-vs-coverage
    assert 0.0 <= float(metric(at, "ECE")) <= 0.1
    assert 0.7 <= float(metric(at, "Held-out accuracy")) <= 1.0
    # drawn once their expander is opened (lazy: the landing page's own charts come first)
    assert not any({"scatter"} <= types for types in chart_types(at))
    at.session_state[state.REFERENCE_CURVES] = True  # what opening the expander sets
    at.run()
    assert sum({"scatter"} <= types for types in chart_types(at)) >= 2
    # provenance: key facts as a table, the whole manifest as a download
    facts = " ".join(m.value for m in at.markdown)
    assert "| Genome build | hg19 |" in facts and "| Word2Vec epochs | 100 |" in facts
    assert "Download manifest.json" in [b.proto.label for b in at.get("download_button")]


def trace_colors(at: AppTest) -> list[dict[str, str]]:
    """Per Plotly chart: each named trace's label (its name without the count) -> colour."""
    out = []
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        traces = {}
        for trace in spec["data"]:
            color = (trace.get("marker") or {}).get("color")
            if trace.get("name") and isinstance(color, str):
                traces[trace["name"].rsplit(" (", 1)[0]] = color.upper()
        out.append(traces)
    return out


def test_reference_map_and_counts_colour_by_lineage():
    """One control recolours the Reference page's map and bars by lineage, in lineage hues."""
    at = open_app()
    control = [g for g in at.button_group if g.label == "Colour reference cells by"]
    assert control and control[0].value == "Cell type"
    by_type = trace_colors(at)
    assert any({"CD4.N1", "CD14.Mono.1", "HSC"} <= set(traces) for traces in by_type)
    control[0].set_value("Lineage").run()
    assert not at.exception, [e.value for e in at.exception]
    maps = [
        t
        for t, types in zip(trace_colors(at), chart_types(at), strict=True)
        if types == {"scattergl"}
    ]
    assert len(maps) == 1, chart_types(at)
    lineages = maps[0]
    assert set(lineages) == {"T", "NK", "B", "myeloid", "progenitor"}, lineages
    assert all(lineages[name] == LINEAGE_COLORS[name] for name in lineages), lineages
    # each lineage's colour is the first shade of its types: CD4.N1 (T) is drawn in T's hue
    assert lineages["T"] == LINEAGE_SHADES["T"][0]
    bars = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    bar = next(spec["data"][0] for spec in bars if spec["data"][0].get("type") == "bar")
    names = next(v for v in (bar.get("x"), bar.get("y")) if isinstance(v, list))
    assert sorted(names) == sorted(lineages)
    assert [c.upper() for c in bar["marker"]["color"]] == [LINEAGE_COLORS[n] for n in names]


def test_unreachable_hub_model_is_an_error_not_a_traceback(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network in tests
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[state.REFERENCE_SPEC] = "hf:databio/r2v-luecken2021-hg38-v2"
    at.run()
    assert not at.exception
    assert at.error, "HubUnavailableError is shown with st.error"


def test_missing_reference_folder_is_an_error_not_a_traceback():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[state.REFERENCE_SPEC] = "/nonexistent/reference"
    at.run()
    assert not at.exception
    assert at.error and "/nonexistent/reference" in at.error[0].value


# --- the demo flow, end to end ----------------------------------------------------------------
def test_demo_flow_end_to_end():
    at = goto(open_app(), state.PAGE_DATA)
    button(at, "Load demo dataset").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[state.DATASET] is not None
    n_cells = int(metric(at, "Cells").replace(",", ""))
    assert n_cells > 100
    assert metric(at, "Peaks in universe").endswith("%")
    # the per-cell mapped-regions histogram, then the QC panel's three (peaks, regions in the
    # universe, promoter fraction)
    assert chart_types(at) == [{"histogram"}] * 4, "mapped regions + three QC histograms"

    goto(at, state.PAGE_PROJECT)
    button(at, "Project cells").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    run = at.session_state[state.PROJECTION]
    assert run is not None and run.n_cells == n_cells
    assert any(s.value.startswith("Projected") for s in at.success)
    assert run.projection.umap is not None, "EV-projection onto the reference map"
    placed = run.projection.map_transform
    assert placed.frames.shape[1] == np.isfinite(run.projection.umap).all(axis=1).sum()
    np.testing.assert_array_equal(placed.frames[-1], run.projection.umap[placed.sample])
    assert {"scattergl"} <= chart_types(at)[0]
    at.selectbox(key="project_color_by").set_value("Lineage").run()  # fragment rerun
    assert not at.exception, [e.value for e in at.exception]
    query_traces = trace_colors(at)[0]  # the query map: grey reference, then the lineages
    assert {"T", "NK", "B", "myeloid", "progenitor"} <= set(query_traces), query_traces
    for lineage, color in LINEAGE_COLORS.items():
        assert query_traces.get(lineage, color) == color, (lineage, query_traces)
    at.selectbox(key="project_color_by").set_value("Confidence").run()  # fragment rerun
    assert not at.exception

    goto(at, state.PAGE_CLUSTERS)
    n_default = int(metric(at, "Clusters"))
    at.slider(key="w_resolution").set_value(3.0).run()
    assert not at.exception
    n_high = int(metric(at, "Clusters"))
    assert n_high > n_default, (n_default, n_high)
    at.slider(key="w_resolution").set_value(0.1).run()
    assert int(metric(at, "Clusters")) < n_high
    assert at.session_state[state.PROJECTION] is run, "re-clustering keeps the projection"

    at.number_input(key="w_n_clusters").set_value(6).run()
    button(at, "Find resolution").click().run()
    assert not at.exception
    assert at.success or at.warning, "the search reports its outcome"
    assert abs(int(metric(at, "Clusters")) - 6) <= 2

    goto(at, state.PAGE_ANNOTATE)
    assert at.dataframe, "per-cluster majority-label table"
    assert at.selectbox(key="w_truth_key").value == "cell_type", "guessed, preselected"
    at.selectbox(key="w_truth_key").set_value("cell_type").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any({"heatmap"} == types for types in chart_types(at)), "confusion matrix"
    # the same bar as the command line on the same held-out cells (tests/core/test_cli.py):
    # measured 0.732 here with the page's defaults (no confidence or distance limit)
    accuracy = float(metric(at, "Accuracy"))
    assert accuracy >= 0.65, f"label accuracy {accuracy} against the demo's cell_type"
    for label in ("Macro F1", "ARI (clusters)", "AMI (clusters)", "Homogeneity"):
        assert 0.0 <= float(metric(at, label)) <= 1.0
    assert any("possibly_absent" in df.value.columns for df in at.dataframe)
    assert at.selectbox(key="annotate_probability_class").value in set(
        at.session_state[state.DATASET].adata.obs["cell_type"].astype(str)
    ) | {"CD4.N2", "CD8.EM"}
    at.selectbox(key="annotate_probability_class").set_value("B").run()  # fragment rerun
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Top probability") != "–", "why this label: the first cell's top class"
    at.slider(key="w_min_confidence").set_value(1.0).run()
    assert int(metric(at, "Unassigned").replace(",", "")) > 0
    at.radio(key="w_label_method").set_value("knn").run()
    assert not at.exception, [e.value for e in at.exception]
    assert int(metric(at, "Unassigned").replace(",", "")) > 0

    goto(at, state.PAGE_EXPORT)
    assert len(at.get("download_button")) >= 5


def test_train_a_reference_and_use_it():
    at = goto(open_app(), state.PAGE_DATA)
    button(at, "Load demo dataset").click().run()
    goto(at, state.PAGE_TRAIN)
    # the demo declares no build: the form proposes the one the peaks show
    assert [t.value for t in at.text_input if t.label == "Genome build"] == ["hg19"]
    at.number_input(key="train_epochs").set_value(2)
    button(at, "Train reference").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    trained = at.session_state[state.TRAINED]
    assert trained["my-reference"].reference.genome == "hg19"
    assert list(trained) == ["my-reference"]
    item = trained["my-reference"]
    assert item.bundle_zip[:2] == b"PK", "downloadable zip bundle"
    assert item.reference.can_ev_project and item.reference.can_transfer_labels
    assert len(at.get("download_button")) == 1
    button(at, "Use as reference").click().run()
    assert at.session_state[state.REFERENCE_SPEC] == "session:my-reference"
    goto(at, state.PAGE_REFERENCE)
    assert int(metric(at, "Reference cells").replace(",", "")) == item.reference.n_cells


def test_training_on_the_train_page_stops_at_the_run_budget(monkeypatch):
    """The page's engine work honours the run's stop hook and budget (issue 22, H16)."""
    at = goto(open_app(), state.PAGE_DATA)
    button(at, "Load demo dataset").click().run()
    goto(at, state.PAGE_TRAIN)
    at.number_input(key="train_epochs").set_value(200)  # minutes of Word2Vec on two cores
    monkeypatch.setenv("SCEMBED_RUN_SECONDS", "3")
    button(at, "Train reference").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert "did not finish" in errors and "time budget" in errors, errors
    assert not at.session_state[state.TRAINED]


# --- uploads ----------------------------------------------------------------------------------
def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="upload_files").set_value([(name, data, "application/octet-stream")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_garbage_upload_shows_error():
    at = upload(goto(open_app(), state.PAGE_DATA), "cells.h5ad", b"this is not an h5ad file")
    assert at.error, "a garbage upload gives st.error"
    assert at.session_state[state.DATASET] is None


def test_pickle_upload_is_refused():
    at = upload(goto(open_app(), state.PAGE_DATA), "model.pkl", b"\x80\x04\x95garbage")
    assert at.error and "pickle" in at.error[0].value.lower()


def test_other_genome_build_warns_before_projecting():
    """hg38 peaks against the hg19 reference: low coverage and build mismatch warnings."""
    data = (SHARED / "geniml_pbmc_hg38_tiny" / "pbmc_hg38_tiny.h5ad").read_bytes()
    at = upload(goto(open_app(), state.PAGE_DATA), "pbmc_hg38_tiny.h5ad", data)
    assert not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "hg38" in warnings and "lift" in warnings
    assert float(metric(at, "Peaks in universe").rstrip("%")) < 5


def test_load_upload_rejects_garbage_and_pickles():
    with pytest.raises(ScEmbedError):
        load_upload("cells.h5ad", b"not an hdf5 file")
    with pytest.raises(ScEmbedError):
        load_upload("cells.csv", b"\x00\x01\x02 binary junk")
    with pytest.raises(UnsafeInputError):
        load_upload("data.joblib", b"anything")
    with pytest.raises(InputFormatError):
        load_upload("empty.h5ad", b"")


def test_load_upload_reads_every_format(tmp_path, planted):
    from formats import write_dataset_formats

    from scembed_core.project import regions_of

    paths = write_dataset_formats(planted, tmp_path)
    universe = regions_of(planted)
    for key in ("h5ad", "10x_h5", "csv", "zip", "tar_gz", "fragments"):
        path = paths[key]
        dataset = load_upload(path.name, path.read_bytes(), universe=universe)
        assert isinstance(dataset, LoadedDataset)
        assert dataset.adata.n_obs >= planted.n_obs - 1, key
    triple = [(p.name, p.read_bytes()) for p in sorted(paths["mtx_dir"].iterdir())]
    dataset = load_uploads(triple)
    assert dataset.adata.shape == planted.shape
    assert dataset.digest == upload_digest(list(reversed(triple))), "order-independent"


# --- figures and exports (no AppTest) ---------------------------------------------------------
def test_hover_text_and_legend_are_html_escaped():
    evil = "<img src=x onerror=alert(1)>"
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [np.nan, np.nan]])
    hover = pd.DataFrame({"cell": ["c1", "<b>c2</b>", "c3"], "label": [evil, "B", "B"]})
    fig = figures.query_map(coords, pd.Series([evil, "B", "B"], name="label"), hover)
    text = " ".join(str(t) for trace in fig.data for t in (trace.text or []))
    names = " ".join(trace.name or "" for trace in fig.data)
    assert "<img" not in text and "<img" not in names
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;b&gt;c2&lt;/b&gt;" in text
    assert sum(len(trace.x) for trace in fig.data) == 2, "unmapped (NaN) cells are skipped"


def test_reference_layer_is_downsampled():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(60_000, 2))
    query = rng.normal(size=(100, 2))
    hover = pd.DataFrame({"cell": [f"c{i}" for i in range(100)]})
    fig = figures.query_map(
        query, pd.Series(rng.random(100), name="confidence"), hover, reference_coords=ref
    )
    assert fig.data[0].name == "reference" and len(fig.data[0].x) == figures.MAX_REFERENCE_POINTS
    assert fig.data[0].type == "scattergl"
    panels = figures.cluster_panels(query, pd.Series(["0", "1"] * 50), reference_coords=ref)
    assert len(panels.data) == 4, "background + cells, one panel per cluster"


def test_query_layer_is_downsampled_and_animation_ends_on_the_final_map():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(60_000, 2))
    query[:10] = np.nan
    hover = pd.DataFrame({"cell": [f"c{i}" for i in range(60_000)]})
    fig = figures.query_map(query, pd.Series(["a", "b"] * 30_000, name="c"), hover)
    assert sum(len(t.x) for t in fig.data) == figures.MAX_QUERY_POINTS
    assert np.isfinite(np.concatenate([t.x for t in fig.data])).all()
    panels = figures.cluster_panels(query, pd.Series(["0", "1"] * 30_000), max_points=1_000)
    assert sum(len(t.x) for t in panels.data[1::2]) == 1_000
    frames = rng.normal(size=(6, 300, 2))
    animation = figures.projection_animation(
        frames, [0, 20, 40, 60, 80, 100], reference_coords=rng.normal(size=(500, 2))
    )
    assert len(animation.frames) == 6 and animation.layout.sliders[0].active == 5
    np.testing.assert_array_equal(animation.data[1].x, frames[-1][:, 0])
    np.testing.assert_array_equal(animation.frames[0].data[0].x, frames[0][:, 0])
    assert animation.layout.updatemenus[0].buttons[0].label == "Play"


def test_confusion_heatmap_row_normalised():
    confusion = pd.DataFrame([[8, 2], [0, 5]], index=["A", "B"], columns=["A", "B"])
    z = np.asarray(figures.confusion_heatmap(confusion, normalize_rows=True).data[0].z)
    assert np.allclose(z.sum(axis=1), 1.0)
    raw = np.asarray(figures.confusion_heatmap(confusion, normalize_rows=False).data[0].z)
    assert raw[0, 0] == 8


def test_annotated_h5ad_round_trip(tmp_path, planted, planted_reference):
    from scembed_core.labels.assign import assign_labels, label_classes, probabilities_of
    from scembed_core.project import project

    projection = project(planted, planted_reference, ev=True)
    labels = assign_labels(projection.embedding, planted_reference, k=5)
    clusters = np.zeros(planted.n_obs, dtype=int)
    annotated = exports.annotated_adata(
        planted, planted_reference, projection, clusters, labels, resolution=1.0, k=5
    )
    table = exports.per_cell_table(annotated)
    path = tmp_path / "out.h5ad"
    path.write_bytes(exports.annotated_h5ad_bytes(annotated))
    back = ad.read_h5ad(path)
    assert back.obsm["X_scembed"].shape == (planted.n_obs, planted_reference.model.dim)
    assert list(back.obs["scembed_label"].astype(str)) == list(labels["label"])
    assert back.obsm["X_scembed_umap"].shape == (planted.n_obs, 2)
    assert "X_scembed_whitened" in back.obsm
    assert {"scembed_cluster", "scembed_label_confidence"} <= set(back.obs.columns)
    classes = label_classes(labels)
    assert list(back.uns["scembed"]["label_classes"]) == classes
    np.testing.assert_allclose(back.obsm["scembed_label_probabilities"], probabilities_of(labels))
    assert back.uns["scembed"]["scembed_label"]["params"]["n_neighbors"] == 5
    assert [f"scembed_prob_{c}" for c in classes] == [
        c for c in table.columns if c.startswith("scembed_prob_")
    ], "one CSV column per class"
    assert b"<html" in exports.figure_html(figures.histogram(np.arange(10)))[:200]


def test_full_reference_from_a_region_only_model():
    """A geniml-format model (region vectors only) + labelled data -> a usable full reference."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[state.REFERENCE_SPEC] = str(Path(__file__).parents[1] / "data" / "geniml_tiny")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    goto(at, state.PAGE_DATA)
    button(at, "Load demo dataset").click().run()
    goto(at, state.PAGE_TRAIN)
    assert at.radio(key="train_mode").value == "Use its region vectors"
    button(at, "Train reference").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    item = at.session_state[state.TRAINED]["my-reference"]
    built = item.reference
    assert built.can_ev_project and built.can_transfer_labels
    assert built.n_regions == 60, "the region model's universe, not the dataset's peaks"


def _layout(value):
    """The shape of a nested ``uns`` entry: dict keys all the way down, table columns."""
    if isinstance(value, dict):
        return {key: _layout(item) for key, item in value.items()}
    if isinstance(value, pd.DataFrame):
        return ("table", tuple(value.columns))
    return None


def test_app_export_and_command_line_write_the_same_keys(tmp_path, monkeypatch):
    """The Export page's .h5ad and `project`'s have the same obs, obsm and uns layout."""
    from scembed_core import reference as reference_module
    from scembed_core.cli import main
    from scembed_core.cluster import build_knn_graph, louvain
    from scembed_core.io import read_dataset
    from scembed_core.labels.assign import assign_labels
    from scembed_core.liftover import detect_build
    from scembed_core.project import project, regions_of

    reference = reference_module.load_default_reference()
    monkeypatch.setattr(reference_module, "load_default_reference", lambda: reference)
    out = tmp_path / "cli.h5ad"
    query = reference_module.DEMO_QUERY_PATH
    assert main(["project", str(query), "--out", str(out), "--csv"]) == 0
    cli = ad.read_h5ad(out)

    # what the app computes (its cached stages) and writes on the Export page
    adata = read_dataset(query)
    projection = project(adata, reference)
    clusters = louvain(build_knn_graph(projection.space, state.N_NEIGHBORS), 1.0, seed=0)
    labels = assign_labels(
        projection.embedding,
        reference,
        neighbors=projection.neighbors,
        n_regions=projection.coverage.n_regions_per_cell,  # as the app's cached_transfer
    )
    detection = detect_build(regions_of(adata), reference.model.universe, reference.genome)
    annotated = exports.annotated_adata(
        adata, reference, projection, clusters, labels, resolution=1.0, detection=detection
    )
    path = tmp_path / "app.h5ad"
    path.write_bytes(exports.annotated_h5ad_bytes(annotated))
    app = ad.read_h5ad(path)

    assert list(app.obs.columns) == list(cli.obs.columns)
    assert sorted(app.obsm) == sorted(cli.obsm)
    assert _layout(dict(app.uns["scembed"])) == _layout(dict(cli.uns["scembed"]))
    app_params, cli_params = app.uns["scembed"]["params"], cli.uns["scembed"]["params"]
    assert {k: str(v) for k, v in app_params.items()} == {k: str(v) for k, v in cli_params.items()}
    for column in ("scembed_cluster", "scembed_label", "scembed_cluster_label"):
        np.testing.assert_array_equal(app.obs[column].astype(str), cli.obs[column].astype(str))
    assert "Unmapped" not in set(app.obs["scembed_cluster"].astype(str))
    csv = pd.read_csv(out.with_suffix(".csv"), index_col=0)
    assert list(exports.per_cell_table(annotated).columns) == list(csv.columns)
    # the page's tables come from the same results without copying the counts
    light = exports.annotated_adata(
        adata, reference, projection, clusters, labels, resolution=1.0, counts=False
    )
    assert light.X is None
    pd.testing.assert_frame_equal(exports.per_cell_table(light), exports.per_cell_table(annotated))
