"""The cosine index (scembed_core.knn): hnswlib against exact search."""

import numpy as np

from scembed_core.knn import ExactCosineIndex, build_cell_index, knn_query


def test_hnswlib_and_exact_search_agree(planted_reference):
    data = np.asarray(planted_reference.cells.obsm["X_scembed"])
    queries = data[:40] + 0.01
    approx, _ = knn_query(build_cell_index(data), queries, 5)
    exact, _ = knn_query(ExactCosineIndex(data), queries, 5)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(approx, exact, strict=True)])
    assert overlap >= 0.95
