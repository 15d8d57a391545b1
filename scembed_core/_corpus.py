"""Word2Vec documents from a cells x regions matrix, reshuffled on each pass, stoppable."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp

__all__ = ["GENSIM_MAX_DOCUMENT_WORDS", "ShuffledCorpus", "documents_from_matrix", "stable_hash"]

# gensim's Cython loop silently truncates a document at 10,000 words (MAX_WORDS_IN_BATCH).
GENSIM_MAX_DOCUMENT_WORDS = 10_000


def documents_from_matrix(
    cells_by_regions: sp.csr_matrix, *, rng: np.random.Generator | None = None
) -> list[list[str]]:
    """Turn a binary cells x regions matrix into Word2Vec documents.

    Words are region indices as strings (gensim needs hashable tokens; the index is the
    universe row). When ``rng`` is given, each document is shuffled; this is done for all
    cells at once by sorting random keys within rows, not by a loop of shuffles.
    Documents longer than gensim's 10,000-word limit are split so no region is lost.
    """
    x = sp.csr_matrix(cells_by_regions)
    indices = x.indices.astype(np.int64, copy=True)
    row_of = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    if rng is not None and indices.size:
        order = np.lexsort((rng.random(indices.size), row_of))
        indices = indices[order]
    words = indices.astype(str).tolist()
    bounds = x.indptr.tolist()
    documents = []
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        for chunk in range(begin, end, GENSIM_MAX_DOCUMENT_WORDS):
            stop = min(chunk + GENSIM_MAX_DOCUMENT_WORDS, end)
            if stop - chunk >= 2:
                documents.append(words[chunk:stop])
    return documents


def stable_hash(text: str) -> int:
    """Hash for gensim's vector initialisation that, unlike ``hash``, is stable across runs."""
    return zlib.crc32(text.encode())


class ShuffledCorpus:
    """Re-iterable corpus that reshuffles every document on each pass.

    ``stop`` (see :func:`scembed_core.stopping.stop_asker`) is asked every
    :data:`_STOP_EVERY` documents from gensim's producer thread; when it says so the pass
    ends early, so a stopped epoch returns promptly and the caller raises ``Cancelled``.
    """

    def __init__(
        self, matrix: sp.csr_matrix, seed: int, stop: Callable[[], bool] | None = None
    ) -> None:
        self.matrix = matrix
        self.rng = np.random.default_rng(seed)
        self.stop = stop

    def __iter__(self) -> Iterator[list[str]]:
        documents = documents_from_matrix(self.matrix, rng=self.rng)
        if self.stop is None:
            return iter(documents)
        return self._until_stopped(documents, self.stop)

    @staticmethod
    def _until_stopped(documents: list[list[str]], stop: Callable[[], bool]) -> Iterator[list[str]]:
        for start in range(0, len(documents), _STOP_EVERY):
            if stop():
                return
            yield from documents[start : start + _STOP_EVERY]


#: Documents between two looks at the stop hook during a Word2Vec epoch.
_STOP_EVERY = 2048
