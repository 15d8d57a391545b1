"""guess_label_key: the cell-type column, never cluster ids, samples or QC numbers."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scembed_core.io import guess_label_key


def frame(**columns) -> ad.AnnData:
    n = len(next(iter(columns.values())))
    obs = pd.DataFrame(columns, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(obs=obs)


def test_the_real_granja_obs_gives_cell_type_not_initial_clusters(granja):
    assert list(granja.obs.columns[:5]) != ["cell_type"], "cluster ids come first there"
    assert "initialClusters" in granja.obs
    assert guess_label_key(granja) == "cell_type"


def test_named_label_columns_win_and_cluster_ids_never_do():
    rng = np.random.default_rng(0)
    types = rng.choice(["B cells", "T cells", "NK"], 60)
    clusters = pd.Categorical(rng.choice([f"C{i}" for i in range(8)], 60))
    assert guess_label_key(frame(leiden=clusters, annotation=types)) == "annotation"
    assert guess_label_key(frame(seurat_clusters=clusters, sample=types)) is None
    assert guess_label_key(frame(initialClusters=clusters)) is None
    assert guess_label_key(frame(my_celltypes_v2=types, batch=types)) == "my_celltypes_v2"
    numbers = pd.Categorical(rng.choice(["0", "1", "2"], 60))
    assert guess_label_key(frame(groups_of_cells=numbers)) is None, "numbers are ids"
    assert guess_label_key(frame(n_peaks=rng.integers(0, 9, 60))) is None
    two = frame(tissue_kind=types, body_site=types)
    assert guess_label_key(two) is None, "columns not named like labels: no guess"


@pytest.mark.parametrize("n_categories", [1, 201])
def test_too_few_or_too_many_categories_are_not_labels(n_categories):
    values = [f"type{i % n_categories}" for i in range(1000)]
    assert guess_label_key(frame(cell_type=values)) is None
