"""The per-cluster majority vote: one rule, one tie-break (scembed_core.labels.vote)."""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core.labels.vote import UNASSIGNED, annotate_clusters, cluster_vote


def test_a_tie_goes_to_the_label_that_sorts_first_whatever_the_cell_order():
    clusters = ["0"] * 4 + ["1"] * 3 + ["2"] * 2
    labels = ["B", "B", "A", "A"] + [UNASSIGNED, UNASSIGNED, "C"] + [UNASSIGNED] * 2
    table = annotate_clusters(clusters, labels)
    assert table["cluster"].tolist() == ["0", "1", "2"]
    assert table["label"].tolist() == ["A", "C", UNASSIGNED]  # B came first, A sorts first
    np.testing.assert_allclose(table["agreement"], [0.5, 1 / 3, 0.0])
    assert table["n_cells"].tolist() == [4, 3, 2]
    reordered = annotate_clusters(clusters[::-1], labels[::-1])
    assert reordered.equals(table)


def test_cluster_vote_on_counts_ignores_unassigned_votes():
    # columns in no particular order; Unassigned has the most cells but does not vote
    names = ["b", UNASSIGNED, "a"]
    counts = np.array([[2, 9, 2], [0, 4, 0], [1, 0, 3]])
    labels, agreement = cluster_vote(counts, names, counts.sum(axis=1))
    assert labels.tolist() == ["a", UNASSIGNED, "a"]
    np.testing.assert_allclose(agreement, [2 / 13, 0.0, 0.75])


def test_cluster_majority_vote():
    table = annotate_clusters(
        np.array(["0", "0", "0", "1", "1"]), np.array(["B", "B", "T", UNASSIGNED, UNASSIGNED])
    )
    assert table.to_dict("list") == {
        "cluster": ["0", "1"],
        "label": ["B", UNASSIGNED],
        "agreement": [pytest.approx(2 / 3), 0.0],
        "n_cells": [3, 2],
    }
