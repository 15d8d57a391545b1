"""The vote counter and the per-cluster majority vote: one rule each, one tie-break."""

from __future__ import annotations

import numpy as np
import pytest

from scembed_core.labels.clusters import cluster_majority, cluster_vote
from scembed_core.labels.vote import UNASSIGNED, vote, vote_fractions


def test_a_tie_goes_to_the_label_that_sorts_first_whatever_the_cell_order():
    clusters = ["0"] * 4 + ["1"] * 3 + ["2"] * 2
    labels = ["B", "B", "A", "A"] + [UNASSIGNED, UNASSIGNED, "C"] + [UNASSIGNED] * 2
    table = cluster_majority(clusters, labels)
    assert table["cluster"].tolist() == ["0", "1", "2"]
    assert table["label"].tolist() == ["A", "C", UNASSIGNED]  # B came first, A sorts first
    np.testing.assert_allclose(table["agreement"], [0.5, 1 / 3, 0.0])
    assert table["n_cells"].tolist() == [4, 3, 2]
    reordered = cluster_majority(clusters[::-1], labels[::-1])
    assert reordered.equals(table)


def test_cluster_vote_on_counts_ignores_unassigned_votes():
    # columns in no particular order; Unassigned has the most cells but does not vote
    names = ["b", UNASSIGNED, "a"]
    counts = np.array([[2, 9, 2], [0, 4, 0], [1, 0, 3]])
    labels, agreement = cluster_vote(counts, names, counts.sum(axis=1))
    assert labels.tolist() == ["a", UNASSIGNED, "a"]
    np.testing.assert_allclose(agreement, [2 / 13, 0.0, 0.75])


def test_cluster_majority_vote():
    table = cluster_majority(
        np.array(["0", "0", "0", "1", "1"]), np.array(["B", "B", "T", UNASSIGNED, UNASSIGNED])
    )
    assert table.to_dict("list") == {
        "cluster": ["0", "1"],
        "label": ["B", UNASSIGNED],
        "agreement": [pytest.approx(2 / 3), 0.0],
        "n_cells": [3, 2],
    }


def test_vote_fractions_count_each_class_and_skip_missing_neighbours():
    indices = np.array([[0, 1, 2], [2, 2, -1], [-1, -1, -1], [3, 1, 3]])
    codes = np.array([0, 1, 1, -1])  # cell 3 belongs to no class: it does not vote
    proba = vote_fractions(indices, codes, 3)
    np.testing.assert_allclose(proba[0], [1 / 3, 2 / 3, 0])
    np.testing.assert_allclose(proba[1], [0, 1, 0])
    assert np.isnan(proba[2]).all()
    np.testing.assert_allclose(proba[3], [0, 1, 0])


def test_vote_on_codes_breaks_ties_to_the_smallest_code():
    codes = np.array([[2, 1, 1, 2], [0, 0, 0, 0]])
    valid = np.array([[True] * 4, [False] * 4])
    winner, fraction = vote(codes, valid)
    assert winner[0] == 1 and fraction[0] == 0.5
    assert np.isnan(fraction[1])
