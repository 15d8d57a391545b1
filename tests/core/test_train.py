"""Word2Vec training: documents, parameters, untrained regions, planted-structure quality."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KNeighborsClassifier

from scembed_core.errors import ParameterError, TrainingError
from scembed_core.project import pool_region_vectors, regions_of
from scembed_core.train import (
    GENSIM_MAX_DOCUMENT_WORDS,
    TrainingParams,
    documents_from_matrix,
    train_region_vectors,
)


def test_documents_are_shuffled_sets_of_region_ids():
    x = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=np.float32))
    docs = documents_from_matrix(x, rng=np.random.default_rng(0))
    # the one-word document cannot give a context pair and is skipped
    assert [sorted(d) for d in docs] == [["0", "1", "3"], ["0", "1", "2", "3"]]
    orders = {tuple(documents_from_matrix(x, rng=np.random.default_rng(s))[1]) for s in range(20)}
    assert len(orders) > 1, "documents must be reshuffled"


def test_long_documents_are_split_not_truncated():
    n = GENSIM_MAX_DOCUMENT_WORDS + 500
    x = sp.csr_matrix(np.ones((1, n), dtype=np.float32))
    docs = documents_from_matrix(x)
    assert [len(d) for d in docs] == [GENSIM_MAX_DOCUMENT_WORDS, 500]
    assert sum(len(d) for d in docs) == n


def test_learning_rate_decays_exponentially():
    params = TrainingParams(alpha=0.1, lr_decay=0.95, min_alpha=1e-4)
    assert params.learning_rate(0) == pytest.approx(0.1)
    assert params.learning_rate(10) == pytest.approx(0.1 * 0.95**10)
    assert params.learning_rate(10_000) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "field,value", [("epochs", 0), ("window", 0), ("lr_decay", 1.5), ("sg", 3)]
)
def test_invalid_parameters_are_refused(field, value):
    with pytest.raises(ParameterError, match=field):
        TrainingParams(**{field: value})


def test_training_needs_coaccessible_regions(planted):
    x = sp.identity(10, format="csr", dtype=np.float32)
    with pytest.raises(TrainingError, match="two or more"):
        train_region_vectors(x, regions_of(planted[:, :10]))


def test_rare_regions_are_untrained_and_excluded_from_pooling(planted):
    x = sp.csr_matrix(planted.X, copy=True).tolil()
    x[:, 5] = 0
    x[0, 5] = 1  # region 5 seen in one cell only: below min_count
    x = x.tocsr()
    params = TrainingParams(epochs=2, vector_size=8, min_count=3, workers=1)
    vectors, trained, stats = train_region_vectors(x, regions_of(planted), params)
    assert not trained[5] and np.all(vectors[5] == 0)
    assert stats["n_regions_untrained"] == int((~trained).sum()) >= 1
    # a cell whose only region is untrained gets NaN, not a fake vector
    only5 = sp.csr_matrix(([1.0], ([0], [5])), shape=(1, x.shape[1]))
    assert np.isnan(pool_region_vectors(only5, vectors, trained)).all()


def test_planted_types_separate_in_embedding_space(planted):
    params = TrainingParams(
        epochs=30, window=20, vector_size=16, min_count=2, workers=1, alpha=0.05
    )
    vectors, trained, _ = train_region_vectors(planted.X, regions_of(planted), params)
    embedding = pool_region_vectors(planted.X, vectors, trained)
    truth = planted.obs["cell_type"].to_numpy()
    knn = KNeighborsClassifier(10, metric="cosine").fit(embedding[:240], truth[:240])
    accuracy = (knn.predict(embedding[240:]) == truth[240:]).mean()
    assert accuracy >= 0.9
    from sklearn.cluster import KMeans

    ari = adjusted_rand_score(truth, KMeans(4, n_init=10, random_state=0).fit_predict(embedding))
    assert ari >= 0.8
