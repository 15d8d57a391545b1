"""Second opinion: real demo clusters agree with their types; a swapped label does not."""

from __future__ import annotations

import json
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scembed_core as se
from scembed_core.labels.second_opinion import PROFILE_FILE, lineage_of, type_profiles
from scembed_core.reference import (
    DEFAULT_REFERENCE_DIR,
    DEMO_QUERY_PATH,
    load_bundle,
    load_default_reference,
    save_reference,
)


def _with_truth_clusters(labels: dict[str, str] | None = None) -> ad.AnnData:
    """The demo query clustered by its true types, each cluster labelled (maybe wrongly)."""
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    demo.obs["scembed_cluster"] = demo.obs["cell_type"].astype(str)
    names = sorted(demo.obs["scembed_cluster"].unique())
    table = pd.DataFrame({"cluster": names, "label": [(labels or {}).get(n, n) for n in names]})
    demo.uns["scembed"] = {"scembed_cluster_label": {"cluster_table": table}}
    return demo


def test_demo_clusters_and_a_swapped_label():
    reference = load_default_reference()
    demo = _with_truth_clusters({"B": "CD14.Mono.1", "NK": "GMP"})
    scores = se.tl.second_opinion(demo, reference, copy=True).uns["scembed"]
    table = scores["scembed_cluster_label"]["cluster_table"].set_index("cluster")
    sizes = demo.obs["cell_type"].value_counts()
    big = sizes.index[sizes >= 50]
    truth_best = table.loc[big, "second_opinion"]
    assert (truth_best == big).mean() >= 0.75  # the exact type for most large clusters
    swapped = {"B", "NK"}
    for cluster in big:
        agree = table.loc[cluster, "markers_agree"]
        assert agree == (cluster not in swapped), cluster
    assert table.loc["B", "second_opinion"] == "B"
    assert table.loc["CD4.N1", "label"] == "CD4.N1"
    assert set(scores["second_opinion"]["scores"].columns) == set(reference.cells.obs["cell_type"])
    assert scores["second_opinion"]["params"]["n_regions_compared"] == 10_000
    assert (table["second_opinion_score"].between(-1, 1)).all()


def test_lineages_and_fallback():
    manifest = json.loads((DEFAULT_REFERENCE_DIR / "manifest.json").read_text())
    lineages = manifest["lineages"]
    assert lineage_of("CD8.EM", lineages) == lineage_of("CD4.N1", lineages) == "T"
    assert lineage_of("CD14.Mono.2") == "CD14.Mono" and lineage_of("CLP_1") == "CLP"
    assert set(manifest["marker_genes"]) == set(lineages.values())


def test_built_reference_stores_profiles_and_old_bundles(planted, planted_reference, tmp_path):
    profiles = type_profiles(planted_reference)
    assert profiles is not None and profiles.classes == ["type0", "type1", "type2", "type3"]
    # type t opens its 40 planted regions in about half its cells, the others in 5%
    block = profiles.fractions[1, 40:80]
    assert block.mean() > 0.4 and profiles.fractions[1, :40].mean() < 0.1
    saved = save_reference(planted_reference, tmp_path / "bundle")
    assert (tmp_path / "bundle" / PROFILE_FILE).is_file()
    loaded = type_profiles(load_bundle(tmp_path / "bundle"))
    np.testing.assert_allclose(loaded.fractions, profiles.fractions, atol=1e-3)
    # an older bundle: no profiles stored and no accessibility in its cells
    old = tmp_path / "old"
    shutil.copytree(saved.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("type_profiles")
    manifest["files"].pop(PROFILE_FILE)
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / PROFILE_FILE).unlink()
    query = planted[240:].copy()
    query.obs["scembed_cluster"] = query.obs["cell_type"].astype(str)
    table = pd.DataFrame({"cluster": ["type0"], "label": ["type0"]})
    query.uns["scembed"] = {"scembed_cluster_label": {"cluster_table": table}}
    assert se.tl.second_opinion(query, load_bundle(old)) is None
    assert query.uns["scembed"]["second_opinion"]["status"].startswith("unavailable")
    assert "second_opinion" not in query.uns["scembed"]["scembed_cluster_label"]["cluster_table"]
    se.tl.second_opinion(query, saved)
    stored = query.uns["scembed"]["scembed_cluster_label"]["cluster_table"]
    assert stored["markers_agree"].tolist() == [True]


def test_needs_clusters():
    demo = ad.read_h5ad(DEMO_QUERY_PATH)
    with pytest.raises(se.errors.ParameterError, match="cluster"):
        se.tl.second_opinion(demo, load_default_reference())
