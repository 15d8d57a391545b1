"""Label colours, lineages, name matching and the truth-column guess (issue 23)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scembed_core.evaluate import classification_report
from scembed_core.io import guess_label_key
from scembed_core.labels.names import match_names, suggest_label_map
from scembed_core.lineage import (
    BUILTIN_HIERARCHY,
    guess_lineage,
    lineage_report,
    reference_label_colors,
    reference_lineages,
)
from scembed_core.palette import GREY, LINEAGE_COLORS, assign_colors, label_colors
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle

ROOT = Path(__file__).resolve().parents[2]


def _hue_distance(a: str, b: str) -> float:
    import colorsys

    def hls(c: str):
        return colorsys.rgb_to_hls(*(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)))

    h1, h2 = hls(a)[0], hls(b)[0]
    return min(abs(h1 - h2), 1 - abs(h1 - h2))


def test_forty_labels_get_forty_distinct_colours_and_unassigned_is_grey():
    labels = [f"type {i}" for i in range(40)] + ["Unassigned", "Unknown", "nan"]
    colors = assign_colors(labels)
    assert len({colors[f"type {i}"] for i in range(40)}) == 40
    assert colors["Unassigned"] == colors["Unknown"] == colors["nan"] == GREY
    assert GREY not in {colors[f"type {i}"] for i in range(40)}
    assert assign_colors(reversed(labels)) == colors  # order of appearance does not matter


def test_lineages_get_related_hues():
    colors = assign_colors(BUILTIN_HIERARCHY, BUILTIN_HIERARCHY)
    t_cells = [c for label, c in colors.items() if BUILTIN_HIERARCHY[label] == "T"]
    assert len(set(t_cells)) == 6
    # every T-cell colour is nearer the T hue than the myeloid and B hues
    for color in t_cells:
        own = _hue_distance(color, LINEAGE_COLORS["T"])
        assert own < _hue_distance(color, LINEAGE_COLORS["myeloid"])
        assert own < _hue_distance(color, LINEAGE_COLORS["B"])


def test_chart_colours_agree_with_the_reference_map_up_to_case_and_aliases():
    base = {"B": "#E69F00", "NK": "#009E73", "CD14.Mono.1": "#D55E00"}
    colors = label_colors(
        ["nk", "B", "Monocytes", "Unassigned", "Plasma"], base, aliases={"CD14.Mono.1": "Monocytes"}
    )
    assert colors["nk"] == "#009E73" and colors["B"] == "#E69F00"
    assert colors["Monocytes"] == "#D55E00"
    assert colors["Unassigned"] == GREY
    assert colors["Plasma"] not in set(base.values()) | {GREY}


def test_builtin_bundle_carries_its_colours_and_old_bundles_compute_the_same(tmp_path):
    reference = load_bundle(DEFAULT_REFERENCE_DIR)
    stored = reference.manifest["label_colors"]["cell_type"]
    assert set(stored) == set(reference.label_counts().index)
    assert reference.manifest["label_hierarchy"]["cell_type"] == BUILTIN_HIERARCHY
    # an old bundle (no colour keys): the same map, computed on load
    old_keys = ("label_colors", "label_hierarchy", "lineage_colors")
    manifest = {k: v for k, v in reference.manifest.items() if k not in old_keys}
    assert reference_label_colors(dataclasses.replace(reference, manifest=manifest)) == stored
    # the script adds them to a bundle without them, identically, touching no other file
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(DEFAULT_REFERENCE_DIR / "cells.h5ad", old)
    (old / "manifest.json").write_text(json.dumps(manifest))
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from add_label_colors import add_label_colors
    finally:
        sys.path.pop(0)
    add_label_colors(old)
    again = json.loads((old / "manifest.json").read_text())
    assert {k: again[k] for k in old_keys} == {k: reference.manifest[k] for k in old_keys}
    assert again["files"] == reference.manifest["files"]


def test_compact_view_gives_the_lineages_and_colours_of_the_full_reference():
    """The Reference page colours its first-drawn (compact) map by lineage as the full one."""
    from scembed_core.compact import read_summary

    reference = load_bundle(DEFAULT_REFERENCE_DIR)
    summary = read_summary(DEFAULT_REFERENCE_DIR)
    assert reference_lineages(summary) == reference_lineages(reference) == BUILTIN_HIERARCHY
    # without a stored hierarchy or colours: guessed from the compact view's label names
    old_keys = ("label_colors", "label_hierarchy", "lineage_colors")
    manifest = {k: v for k, v in summary.manifest.items() if k not in old_keys}
    bare = dataclasses.replace(summary, manifest=manifest)
    assert reference_lineages(bare) == reference_lineages(reference, stored=False)
    assert reference_lineages(bare) == BUILTIN_HIERARCHY
    assert reference_label_colors(bare) == reference.manifest["label_colors"]["cell_type"]


@pytest.mark.parametrize(
    ("name", "lineage"),
    [("B cells", "B"), ("CD14+ Monocytes", "myeloid"), ("Naive CD4 T", "T"), ("NK cells", "NK"),
     ("HSPC", "progenitor"), ("Erythroblast", "erythroid"), ("pDC", "dendritic"),
     ("16_Pre.B", "B"), ("Fibroblast", None)],
)  # fmt: skip
def test_guess_lineage(name, lineage):
    assert guess_lineage(name) == lineage


def test_guess_label_key_prefers_cell_types_and_never_cluster_ids(granja):
    assert guess_label_key(granja) == "cell_type"
    obs = granja.obs[["initialClusters", "Clusters", "Group", "FRIP"]]
    assert guess_label_key(obs) is None  # cluster ids, a batch, a number
    obs = granja.obs[["initialClusters", "bio_classification"]]
    assert guess_label_key(obs) == "bio_classification"
    many = pd.DataFrame({"cell_type": [f"c{i}" for i in range(300)]})
    assert guess_label_key(many) is None  # one value per cell
    assert guess_label_key(pd.DataFrame({"Annotation": ["a", "b"] * 5})) == "Annotation"
    pbmc = ad.read_h5ad(ROOT.parent / "shared/data/geniml_pbmc_hg38_tiny/pbmc_hg38_tiny.h5ad")
    assert guess_label_key(pbmc) == "cell_type"


def _renamed(labels: np.ndarray) -> np.ndarray:
    rename = {"B": "B cells", "NK": "natural killer", "CD14.Mono.1": "Monocytes",
              "CD14.Mono.2": "Monocytes", "CD4.N1": "cd4 n1"}  # fmt: skip
    return np.array([rename.get(x, x) for x in labels], dtype=object)


def test_suggested_map_recovers_renamed_labels(granja):
    truth = granja.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    predicted = truth.copy()
    wrong = rng.random(len(truth)) < 0.2  # a fifth of the predictions are wrong
    predicted[wrong] = rng.choice(np.unique(truth), size=int(wrong.sum()))
    predicted[:50] = "Unassigned"
    user = _renamed(truth)
    assert classification_report(user, predicted).accuracy < 0.7
    mapping = suggest_label_map(user, predicted)
    assert mapping["CD4.N1"] == "cd4 n1"  # by name
    assert mapping["B"] == "B cells" and mapping["NK"] == "natural killer"  # by the cells
    assert mapping["CD14.Mono.1"] == mapping["CD14.Mono.2"] == "Monocytes"  # many-to-one
    assert "Unassigned" not in mapping
    expected = float(np.mean(predicted == truth))
    report = classification_report(user, predicted, label_map=mapping)
    assert report.accuracy >= expected - 1e-9
    assert match_names(["CD14.Mono.1", "B"], ["cd14 mono 1", "b"]) == {
        "CD14.Mono.1": "cd14 mono 1",
        "B": "b",
    }


def test_lineage_report_scores_lineages_through_the_label_map():
    truth = np.array(["B cells", "B cells", "Monocytes", "CD8 T", "HSC", np.nan], dtype=object)
    predicted = np.array(["Pre.B", "B", "CD14.Mono.2", "CD4.N1", "GMP", "NK"], dtype=object)
    report = lineage_report(truth, predicted, BUILTIN_HIERARCHY)
    assert report.accuracy == 1.0  # fine types differ, lineages agree
    assert set(report.confusion.index) == {"B", "myeloid", "T", "progenitor"}
    predicted[0] = "NK"
    report = lineage_report(truth, predicted, BUILTIN_HIERARCHY)
    assert report.accuracy == pytest.approx(0.8)
    assert report.confusion.loc["B", "NK"] == 1


def test_run_json_keeps_the_scoring_and_refuses_bad_maps():
    from scembed_core.errors import ParameterError
    from scembed_core.runspec import build_run_spec, read_run_spec

    scoring = {"truth_key": "cell_type", "label_map": {"B": "B cells", "NK": "natural killer"}}
    doc = build_run_spec(reference_spec="default", params={}, scoring=scoring)
    assert doc["scoring"] == scoring
    assert read_run_spec(doc).scoring == scoring
    assert "scoring" not in build_run_spec(reference_spec="default", params={})
    for bad in ({"label_map": {"B": 3}}, {"truth_key": 1}, {"colour": "x"}):
        with pytest.raises(ParameterError, match="scoring"):
            read_run_spec({**doc, "scoring": bad})
