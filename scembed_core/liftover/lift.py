"""Vectorised interval liftover over a parsed :class:`~scembed_core.liftover.chain.Chain`.

Every peak is placed on the chain's global source axis and looked up with a handful of
``searchsorted`` calls over the resolved aligned pieces; there is no Python loop per peak.

A peak ``[start, end)`` is lifted when

* its contig is in the chain (``unknown_contig`` otherwise) and it ends within it
  (``past_chrom_end``),
* at least ``min_match`` of its bases are aligned (``unaligned``; UCSC liftOver's
  ``-minMatch``, default 0.95),
* its first and last aligned bases fall in the same chain (``split_chains``: the ends went
  to different places), and
* its lifted length is within ``max_length_change`` (default 10%) of its own length
  (``length_changed``: a large insertion or deletion between the builds inside the peak).

The lifted interval spans the first to the last aligned base, in forward coordinates on the
destination contig (a ``-`` strand chain reverses the order of the two ends; peaks are
unstranded, so these are lifted and counted as ``n_minus_strand``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ChromosomeNamingError, ParameterError
from ..regions import GenomicRegions, reconcile_chromosome_names
from .chain import Chain

__all__ = ["DROP_REASONS", "REASON_TEXT", "LiftResult", "lift_regions", "lift_positions"]

#: Why a peak was not lifted; index = code in :attr:`LiftResult.reason` (0 = lifted).
DROP_REASONS = ("lifted", "unknown_contig", "past_chrom_end", "unaligned", "split_chains",
                "length_changed")  # fmt: skip
#: What each drop reason means, completing "dropped N intervals ...".
REASON_TEXT = {
    "unknown_contig": "on contigs the chain does not know",
    "past_chrom_end": "past the end of their chromosome in the source build",
    "unaligned": "with too few bases aligned to the other build",
    "split_chains": "whose two ends land in different chains",
    "length_changed": "whose length changed too much",
}


@dataclass(frozen=True)
class LiftResult:
    """Lifted intervals and why the others were dropped.

    Attributes
    ----------
    regions
        The lifted intervals, in input order, for the kept inputs only.
    kept
        Indices (into the input) of the lifted intervals.
    reason
        Per input interval: code into :data:`DROP_REASONS` (0 = lifted).
    minus_strand
        Per input interval: lifted through a ``-`` strand chain.
    chain
        Name of the chain used.
    """

    regions: GenomicRegions
    kept: np.ndarray
    reason: np.ndarray
    minus_strand: np.ndarray
    chain: str

    @property
    def n_input(self) -> int:
        """Number of intervals given."""
        return int(len(self.reason))

    @property
    def n_lifted(self) -> int:
        """Number of intervals lifted."""
        return int(len(self.kept))

    @property
    def dropped(self) -> dict[str, int]:
        """Number of intervals dropped per reason (reasons with none are left out)."""
        counts = np.bincount(self.reason, minlength=len(DROP_REASONS))
        return {DROP_REASONS[i]: int(counts[i]) for i in range(1, len(DROP_REASONS)) if counts[i]}

    @property
    def n_dropped(self) -> int:
        """Number of intervals dropped."""
        return self.n_input - self.n_lifted

    def describe(self) -> str:
        """One sentence: how many were lifted, how many dropped and why."""
        text = f"{self.n_lifted:,} of {self.n_input:,} intervals lifted with {self.chain}"
        if self.n_dropped:
            parts = [f"{n:,} {REASON_TEXT[r]}" for r, n in self.dropped.items()]
            text += "; dropped " + ", ".join(parts)
        return text + "."

    def summary(self) -> dict:
        """Plain-data summary for reports and ``uns``."""
        return {
            "chain": self.chain,
            "n_peaks": self.n_input,
            "n_lifted": self.n_lifted,
            "n_dropped": self.n_dropped,
            "dropped": self.dropped,
            "n_minus_strand": int(self.minus_strand.sum()),
        }


def _search(sorted_values: np.ndarray, x: np.ndarray, side: str, order: np.ndarray) -> np.ndarray:
    """Run ``searchsorted`` with the needles visited in sorted ``order``.

    Cache-friendly: numpy narrows each search from the previous one. The results come in
    the needles' own order.
    """
    out = np.empty(len(x), dtype=np.int64)
    out[order] = np.searchsorted(sorted_values, x[order], side=side)
    return out


def _aligned_before(chain: Chain, x: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Aligned source bases before global position ``x``."""
    i = _search(chain.piece_start, x, "right", order) - 1
    safe = np.maximum(i, 0)
    inside = np.clip(
        x - chain.piece_start[safe], 0, chain.piece_end[safe] - chain.piece_start[safe]
    )
    return np.where(i >= 0, chain.piece_cum[safe] + inside, 0)


def _dest(chain: Chain, piece: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Forward destination coordinate of global source base ``g`` lying in ``piece``."""
    c = chain.piece_chain[piece]
    q = g + chain.piece_delta[piece]
    return np.where(chain.chain_minus[c], chain.chain_dest_size[c] - 1 - q, q)


def _contig_index(chain: Chain, chrom: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """Index of each name's contig in the chain (-1 if unknown); names handled once each."""
    codes, uniques = pd.factorize(np.asarray(chrom))
    uniques = np.asarray(uniques, dtype=object).astype(str)
    renamed, _ = reconcile_chromosome_names(uniques, chain.contigs)
    names = [renamed.get(name, name) for name in uniques]
    return pd.Index(chain.contigs).get_indexer(names)[codes], renamed


def lift_regions(
    regions: GenomicRegions,
    chain: Chain,
    *,
    min_match: float = 0.95,
    max_length_change: float = 0.1,
) -> LiftResult:
    """Lift half-open intervals through ``chain``; see the module docstring for the rules.

    Parameters
    ----------
    regions
        Intervals on the chain's source build (``chr1``/``1`` naming both accepted; the
        result uses the destination's names).
    chain
        A parsed chain (:func:`~scembed_core.liftover.read_chain`, or swapped).
    min_match
        Least fraction of an interval's bases that must be aligned, in ``(0, 1]``.
    max_length_change
        Largest relative change of length allowed, ``>= 0``.

    Raises
    ------
    ChromosomeNamingError
        When none of the intervals' contigs exist in the chain's source build.
    """
    if not 0 < min_match <= 1:
        raise ParameterError(f"min_match must be in (0, 1], got {min_match}.")
    if max_length_change < 0:
        raise ParameterError(f"max_length_change must be >= 0, got {max_length_change}.")
    n = len(regions)
    contig, renamed = _contig_index(chain, regions.chrom)
    reason = np.zeros(n, dtype=np.int8)
    known = contig >= 0
    if n and not known.any():
        raise ChromosomeNamingError(
            f"None of the contigs ({', '.join(sorted(set(regions.chrom))[:5])}) exist in the "
            f"chain {chain.name} ({chain.source} -> {chain.target}; e.g. "
            f"{', '.join(chain.contigs[:3])}). Check the species and genome build."
        )
    reason[~known] = 1
    safe = np.where(known, contig, 0)
    start, end = regions.start, regions.end
    reason[(reason == 0) & (end > chain.contig_sizes[safe])] = 2
    gs = chain.offsets[safe] + start
    ge = chain.offsets[safe] + np.minimum(end, chain.contig_sizes[safe])
    length = np.maximum(end - start, 1)
    order = np.argsort(gs)
    aligned = _aligned_before(chain, ge, order) - _aligned_before(chain, gs, order)
    reason[(reason == 0) & (aligned < min_match * length)] = 3
    n_pieces = len(chain.piece_start)
    first = np.minimum(_search(chain.piece_end, gs, "right", order), n_pieces - 1)
    last = np.maximum(_search(chain.piece_start, ge, "left", order) - 1, 0)
    first_base = np.maximum(gs, chain.piece_start[first])
    last_base = np.minimum(ge, chain.piece_end[last]) - 1
    ok = reason == 0
    split = chain.piece_chain[first] != chain.piece_chain[last]
    reason[ok & split] = 4
    a = _dest(chain, first, first_base)
    b = _dest(chain, last, last_base)
    new_start, new_end = np.minimum(a, b), np.maximum(a, b) + 1
    change = np.abs((new_end - new_start) - (end - start))
    reason[(reason == 0) & (change > max_length_change * length)] = 5
    kept = np.flatnonzero(reason == 0)
    dest_chrom = chain.chain_dest[chain.piece_chain[first[kept]]]
    minus = np.zeros(n, dtype=bool)
    minus[kept] = chain.chain_minus[chain.piece_chain[first[kept]]]
    lifted = GenomicRegions(dest_chrom, new_start[kept], new_end[kept])
    return LiftResult(lifted, kept, reason, minus, chain.name)


def lift_positions(
    chrom: np.ndarray, position: np.ndarray, chain: Chain
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lift single 0-based bases (the preferred chain only).

    Returns
    -------
    ok, chrom, position, minus
        Whether each base is aligned, and where it lands (undefined where not ``ok``).
    """
    position = np.asarray(position, dtype=np.int64)
    contig, _ = _contig_index(chain, np.asarray(chrom, dtype=object).astype(str))
    known = contig >= 0
    safe = np.where(known, contig, 0)
    inside = known & (position >= 0) & (position < chain.contig_sizes[safe])
    g = chain.offsets[safe] + position
    piece = np.maximum(np.searchsorted(chain.piece_start, g, side="right") - 1, 0)
    ok = inside & (g >= chain.piece_start[piece]) & (g < chain.piece_end[piece])
    c = chain.piece_chain[piece]
    return ok, chain.chain_dest[c], _dest(chain, piece, g), chain.chain_minus[c] & ok
