"""Scores (scembed_core.evaluate): classification report, clustering scores, dropout robustness."""

import numpy as np
import pytest
import scipy.sparse as sp

from scembed_core.cluster import (
    kmeans,
)
from scembed_core.evaluate import (
    classification_report,
    clustering_scores,
    drop_nonzeros,
    dropout_robustness,
)
from scembed_core.project import pool_region_vectors


def test_classification_report_with_label_map():
    truth = ["Mono", "Mono", "T", "T", "B"]
    predicted = ["CD14+ Mono", "CD14+ Mono", "CD4 T", "CD8 T", "Plasma"]
    plain = classification_report(truth, predicted)
    assert plain.accuracy == 0.0
    mapped = classification_report(
        truth, predicted, label_map={"CD14+ Mono": "Mono", "CD4 T": "T", "CD8 T": "T"}
    )
    assert mapped.accuracy == pytest.approx(0.8)
    assert mapped.unmapped_labels == ["Plasma"]
    assert mapped.confusion.loc["T", "T"] == 2
    f1 = mapped.per_class.set_index("label")["f1"]
    assert f1["Mono"] == 1.0 and f1["B"] == 0.0
    assert mapped.normalized_confusion().sum(axis=1).tolist() == [1.0, 1.0, 1.0]


def test_clustering_scores_perfect_and_random():
    truth = np.repeat(["a", "b", "c"], 30)
    assert clustering_scores(truth, np.repeat([2, 0, 1], 30))["ari"] == 1.0
    shuffled = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], 30))
    assert clustering_scores(truth, shuffled)["ari"] < 0.1


def test_dropout_removes_requested_fraction_and_degrades_gracefully(planted, planted_reference):
    x = sp.csr_matrix(planted.X)
    truth = planted.obs["cell_type"]
    model = planted_reference.model

    def embed(matrix):
        return pool_region_vectors(matrix, model.vectors, model.trained)

    def cluster(embedding):
        return kmeans(np.nan_to_num(embedding), 4)

    # the 0.5 row's matrix (dropout_robustness uses seed 0): a subset of the non-zeros,
    # about half of each cell's
    dropped = drop_nonzeros(x, 0.5, seed=0)
    assert (dropped - dropped.multiply(x)).nnz == 0, "dropout only removes entries"
    assert abs(dropped.nnz / x.nnz - 0.5) < 0.02
    kept = np.diff(dropped.indptr) / np.diff(x.indptr)
    assert abs(kept.mean() - 0.5) < 0.02
    assert np.quantile(kept, 0.01) > 0.2 and np.quantile(kept, 0.99) < 0.8

    fractions = (0.0, 0.5, 0.8)
    table = dropout_robustness(x, truth, embed, cluster, fractions=fractions).set_index("dropout")
    assert list(table.index) == list(fractions)
    # the 0.5 row scores the half-dropped matrix above, not the intact one
    assert table.loc[0.5, "ari"] == clustering_scores(truth, cluster(embed(dropped)))["ari"]
    for key in ("ari", "ami", "homogeneity"):
        np.testing.assert_allclose(
            table[f"{key}_drift"], table[key] - table.loc[0.0, key], atol=1e-12
        )
    # planted types survive losing half of every cell's regions (measured: ARI 1.0 at 0.5,
    # 0.83-0.86 at 0.8 over seeds 0-4); the score never rises as more signal is dropped
    assert table.loc[0.0, "ari"] >= 0.9 and table.loc[0.5, "ari"] >= 0.9
    assert table.loc[0.5, "ari_drift"] <= 1e-9
    assert table.loc[0.8, "ari"] >= 0.6 and table.loc[0.8, "ari_drift"] < -0.05
