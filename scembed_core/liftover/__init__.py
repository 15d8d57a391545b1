"""Genome builds and liftover: UCSC chains, vectorised interval lifting, build detection.

``hg38 -> hg19`` uses UCSC's chain (shipped in ``scembed_core/data/chains``); ``hg19 ->
hg38`` is the same alignment swapped (:meth:`Chain.swap`, UCSC's ``chainSwap``).
"""

from .builds import (
    CHROMOSOME_SIZES,
    CONFIDENT,
    BuildDetection,
    chain_between,
    detect_build,
    normalize_build,
)
from .chain import Chain, parse_chain, primary_chromosome, read_chain
from .lift import DROP_REASONS, LiftResult, lift_positions, lift_regions

__all__ = [
    "CHROMOSOME_SIZES",
    "CONFIDENT",
    "DROP_REASONS",
    "BuildDetection",
    "Chain",
    "LiftResult",
    "chain_between",
    "detect_build",
    "lift_positions",
    "lift_regions",
    "normalize_build",
    "parse_chain",
    "primary_chromosome",
    "read_chain",
]
