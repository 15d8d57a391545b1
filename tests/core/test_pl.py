"""se.pl: the app's figures from an AnnData and the built-in reference, as a notebook draws them.

The query is a sample of the built-in reference's own cells placed where the reference puts
them (real labels and coordinates; projection itself is tested in test_project.py), with some
cells left unassigned and some without a position.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scembed_core as se
from scembed_core.errors import ParameterError
from scembed_core.pl.palette import PALETTE, UNASSIGNED_COLOR, label_colors

ROOT = Path(__file__).resolve().parents[2]
N = 400


@pytest.fixture(scope="module")
def reference():
    return se.load_reference("default")


@pytest.fixture(scope="module")
def adata(reference) -> ad.AnnData:
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(reference.cells.n_obs, size=N, replace=False))
    cells = reference.cells[rows]
    truth = cells.obs["cell_type"].astype(str).to_numpy()
    label = truth.copy()
    label[:40] = "Unassigned"
    coords = np.asarray(cells.obsm["X_umap"], dtype=float).copy()
    coords[-10:] = np.nan  # cells that cover no trained region have no position
    obs = pd.DataFrame(
        {
            "cell_type": truth,
            "scembed_label": label,
            "scembed_label_confidence": rng.random(N),
            "scembed_cluster": pd.Categorical(rng.integers(0, 3, N).astype(str)),
        },
        index=[f"cell{i}" for i in range(N)],
    )
    return ad.AnnData(obs=obs, obsm={"X_scembed_umap": coords})


def test_query_map_draws_the_grey_reference_then_one_trace_per_label(adata, reference):
    fig = se.pl.query(adata, reference)
    assert fig.data[0].name == "reference" and len(fig.data[0].x) == reference.cells.n_obs
    placed = adata.obs["scembed_label"][np.isfinite(adata.obsm["X_scembed_umap"]).all(axis=1)]
    expected = {f"{label} ({n})" for label, n in placed.value_counts().items()}
    cells = fig.data[1:]
    assert {trace.name for trace in cells} == expected
    assert sum(len(trace.x) for trace in cells) == N - 10, "unplaced cells are skipped"
    assert cells[-1].name.startswith("Unassigned") and cells[-1].marker.color == UNASSIGNED_COLOR
    assert "cell0" in cells[-1].text[0] and "scembed_label_confidence" in cells[-1].text[0]


def test_a_numeric_colour_gets_a_scale_and_a_missing_key_a_clear_error(adata):
    fig = se.pl.query(adata, color="scembed_label_confidence")
    assert len(fig.data) == 1 and fig.data[0].marker.showscale
    np.testing.assert_allclose(
        fig.data[0].marker.color, adata.obs["scembed_label_confidence"].to_numpy()[: N - 10]
    )
    with pytest.raises(ParameterError, match="obs\\['nope'\\]"):
        se.pl.query(adata, color="nope")
    with pytest.raises(ParameterError, match="obsm\\['X_other'\\]"):
        se.pl.query(adata, basis="X_other")


def test_reference_map_and_counts_agree_on_cells_and_colours(reference):
    fig = se.pl.reference(reference)
    counts = reference.label_counts("cell_type")
    assert {t.name for t in fig.data} == {f"{label} ({n})" for label, n in counts.items()}
    bar = se.pl.counts(reference.cells, "cell_type", reference=reference)
    assert sorted(bar.data[0].x) == sorted(counts.to_numpy())
    map_color = {t.name.rsplit(" (", 1)[0]: t.marker.color for t in fig.data}
    bar_color = dict(zip(bar.data[0].y, bar.data[0].marker.color, strict=True))
    assert bar_color == map_color, "a cell type has one colour on the map and in the bars"


def test_cluster_panels_and_confusion(adata):
    panels = se.pl.clusters(adata)
    assert len(panels.data) == 2 * adata.obs["scembed_cluster"].nunique()
    fig = se.pl.confusion(adata, "cell_type")
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z.sum(axis=1), 1.0)  # row-normalised: recall per class
    assert "Unassigned" in list(fig.data[0].x)
    counts = se.pl.confusion(adata, "cell_type", normalize_rows=False)
    assert np.asarray(counts.data[0].z).sum() == N
    truth, label = adata.obs["cell_type"].to_numpy(), adata.obs["scembed_label"].to_numpy()
    diagonal = {
        t: counts.data[0].z[i][list(counts.data[0].x).index(t)]
        for i, t in enumerate(counts.data[0].y)
        if t in counts.data[0].x
    }
    assert sum(diagonal.values()) == (truth == label).sum()


def test_calibration_plots_show_the_label_models_held_out_cells(reference):
    calibration = reference.label_model.calibration
    fig = se.pl.calibration(reference)
    bins = pd.DataFrame(calibration["reliability"]).dropna(subset=["mean_predicted", "accuracy"])
    np.testing.assert_allclose(fig.data[1].x, bins["mean_predicted"])
    assert f"{calibration['ece']:.3f}" in fig.layout.title.text
    cov = se.pl.coverage(reference, threshold=0.5)
    assert cov.data[-1].name == "threshold 0.50" and len(cov.data) == 2
    region_only = dataclasses.replace(reference, label_model=None)
    with pytest.raises(ParameterError, match="no label classifier"):
        se.pl.calibration(region_only)


def test_label_colors_is_the_one_place_and_honours_a_reference_colour_map(reference):
    import plotly.express as px

    assert tuple(px.colors.qualitative.Dark24 + px.colors.qualitative.Alphabet) == PALETTE
    from scembed_core import palette as core_palette

    plain = label_colors(["B", "T", "Unassigned"])  # the engine's one colour rule
    expected = core_palette.label_colors(["B", "T"])
    assert plain == {**expected, "Unassigned": UNASSIGNED_COLOR}
    assert plain["B"] != plain["T"]
    chosen = str(reference.cells.obs["cell_type"].iloc[0])
    own = dataclasses.replace(
        reference, manifest={**reference.manifest, "label_colors": {chosen: "#000000"}}
    )
    mine = label_colors(["B", chosen], own)
    assert mine[chosen] == "#000000" and mine["B"] not in ("#000000", UNASSIGNED_COLOR)
    colors = {t.name.rsplit(" (", 1)[0]: t.marker.color for t in se.pl.reference(own).data}
    assert colors[chosen] == "#000000"
    others = [c for label, c in colors.items() if label != chosen]
    assert len(set(others)) == len(others) and "#000000" not in others  # one colour each


def test_default_keys_are_the_writers_and_importing_pl_does_not_import_plotly():
    from scembed_core import pl, results

    assert (pl.UMAP_KEY, pl.LABEL_KEY, pl.CLUSTER_KEY) == (
        results.UMAP,
        results.LABEL,
        results.CLUSTER,
    )
    code = "import sys, scembed_core as se; se.pl.label_colors; print('plotly' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
