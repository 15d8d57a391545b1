"""Genome builds: chromosome lengths, the chains that link builds, and build detection.

Detection weighs three kinds of evidence, as log-odds of hg38 against hg19:

* **Overlap with the reference universe**, as-is and after lifting the peaks from the other
  build onto the universe's build. Peaks that overlap in one way only are counted
  (``k_as_is``, ``k_lifted``); with a uniform prior on the share ``theta`` of such peaks
  that come from the as-is side, the probability that the query is on the universe's build
  is ``P(theta > 1/2 | Beta(k_as_is + 1, k_lifted + 1))``. A handful of overlaps gives a
  weak verdict, thousands a certain one.
* **Coordinates past a chromosome's end** in one build and not the other (decisive).
* **Contig names** of one build's style: hg38's ``chr1_KI270706v1_random`` or
  ``chrUn_GL000195v1`` against hg19's ``chr1_gl000191_random`` or ``chr6_apd_hap1``.

A declared build (``adata.uns["genome"]``) adds weak odds (9:1), so measured evidence wins.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ChromosomeNamingError, GenomeBuildError
from ..regions import GenomicRegions, canonical_chrom, map_peaks_to_universe
from .chain import Chain, read_chain
from .lift import lift_regions
from .sizes import CHROMOSOME_SIZES

__all__ = [
    "CHROMOSOME_SIZES",
    "CONFIDENT",
    "BuildDetection",
    "normalize_build",
    "chain_between",
    "detect_build",
    "CHAIN_DIR",
]

_ALIASES = {"hg19": "hg19", "grch37": "hg19", "hs37d5": "hg19", "b37": "hg19",
            "hg38": "hg38", "grch38": "hg38"}  # fmt: skip

CHAIN_DIR = Path(__file__).resolve().parent.parent / "data" / "chains"
#: (source, target) -> (file in CHAIN_DIR, read swapped)
KNOWN_CHAINS = {
    ("hg38", "hg19"): ("hg38ToHg19.over.chain.gz", False),
    ("hg19", "hg38"): ("hg38ToHg19.over.chain.gz", True),
}
#: Confidence from which a detected build is acted on (liftover by default).
CONFIDENT = 0.95
_DECLARED_LOG_ODDS = math.log(9.0)
_DECISIVE = 15.0
_HG38_CONTIG = re.compile(r"[A-Z]{2}\d{6}v\d|_alt$|_fix$")
_HG19_CONTIG = re.compile(r"_gl\d{6}|_hap\d+$|^(chr)?Un_gl", re.IGNORECASE)


def normalize_build(name: object) -> str:
    """``hg19``/``hg38`` for any of their names (GRCh37, GRCh38, ...), else ``unknown``."""
    return _ALIASES.get(str(name).strip().lower(), "unknown") if name is not None else "unknown"


@functools.cache
def _load(file: str, swapped: bool) -> Chain:
    chain = read_chain(CHAIN_DIR / file)
    return chain.swap() if swapped else chain


def chain_between(source: str, target: str) -> Chain:
    """Return the shipped chain from build ``source`` to ``target`` (loaded once per process).

    Raises
    ------
    GenomeBuildError
        When no shipped chain links the two builds.
    """
    key = (normalize_build(source), normalize_build(target))
    if key not in KNOWN_CHAINS:
        pairs = ", ".join(f"{a} -> {b}" for a, b in KNOWN_CHAINS)
        raise GenomeBuildError(
            f"No liftover chain links {source} to {target} (available: {pairs}). Choose a "
            f"reference built on {source}, or lift the data to {target} yourself (e.g. UCSC "
            "liftOver) and upload the lifted peaks."
        )
    chain = _load(*KNOWN_CHAINS[key])
    if (chain.source, chain.target) != key:
        raise GenomeBuildError(
            f"The chain file {chain.name} maps {chain.source} -> {chain.target}, not "
            f"{key[0]} -> {key[1]}; the shipped chain files are damaged or mislabelled."
        )
    return chain


@dataclass(frozen=True)
class BuildDetection:
    """The likely genome build of a set of peaks, with the evidence behind it.

    Attributes
    ----------
    build
        ``hg19``, ``hg38``, or None when there is no evidence either way.
    confidence
        Probability of ``build`` under the evidence, in ``[0.5, 1]``.
    reference_build
        The reference universe's build (``unknown`` when it does not say).
    overlap_as_is, overlap_lifted
        Fraction of peaks overlapping the universe as they are, and after lifting them
        from the other build onto the universe's (None when that could not be tried).
    past_end
        Peaks ending past a chromosome's end, per build.
    contig_style
        Peaks on contigs named in each build's style.
    declared
        The build the data declares (``uns["genome"]``), if any.
    evidence
        One sentence per piece of evidence used.
    """

    build: str | None
    confidence: float
    reference_build: str = "unknown"
    overlap_as_is: float | None = None
    overlap_lifted: float | None = None
    past_end: dict[str, int] = field(default_factory=dict)
    contig_style: dict[str, int] = field(default_factory=dict)
    declared: str | None = None
    evidence: tuple[str, ...] = ()

    @property
    def confident(self) -> bool:
        """Whether the detection is confident enough to act on (>= :data:`CONFIDENT`)."""
        return self.build is not None and self.confidence >= CONFIDENT

    def describe(self) -> str:
        """One sentence for people."""
        if self.build is None:
            return "The genome build could not be told from the peaks."
        return f"The peaks look like {self.build} (confidence {self.confidence:.1%})."

    def summary(self) -> dict:
        """Plain-data summary for reports and ``uns``."""
        out = {
            "build": self.build or "unknown",
            "confidence": float(self.confidence),
            "reference_build": self.reference_build,
            "past_end": dict(self.past_end),
            "contig_style": dict(self.contig_style),
            "evidence": list(self.evidence),
        }
        if self.overlap_as_is is not None:
            out["overlap_as_is"] = float(self.overlap_as_is)
        if self.overlap_lifted is not None:
            out["overlap_lifted"] = float(self.overlap_lifted)
        if self.declared:
            out["declared"] = self.declared
        return out


def _past_end(peaks: GenomicRegions) -> dict[str, int]:
    uniques, codes = np.unique(peaks.chrom, return_inverse=True)
    keys = ["chr" + canonical_chrom(c) for c in uniques]
    out = {}
    for build, sizes in CHROMOSOME_SIZES.items():
        limit = np.array([sizes.get(k, np.iinfo(np.int64).max) for k in keys], dtype=np.int64)
        out[build] = int((peaks.end > limit[codes]).sum()) if len(peaks) else 0
    return out


def _contig_style(peaks: GenomicRegions) -> dict[str, int]:
    names, counts = np.unique(peaks.chrom, return_counts=True)
    hg38 = np.array([bool(_HG38_CONTIG.search(n)) for n in names], dtype=bool)
    hg19 = np.array([bool(_HG19_CONTIG.search(n)) for n in names], dtype=bool) & ~hg38
    return {"hg19": int(counts[hg19].sum()), "hg38": int(counts[hg38].sum())}


def _overlap_log_odds(k_same: int, k_other: int) -> float:
    """Log-odds that the query is on the universe's build, from one-sided overlap counts."""
    from scipy.special import betainc

    p_other = float(betainc(k_same + 1, k_other + 1, 0.5))  # P(theta < 1/2)
    p_other = min(max(p_other, 1e-13), 1 - 1e-13)
    return math.log((1 - p_other) / p_other)


def detect_build(
    peaks: GenomicRegions,
    universe: GenomicRegions | None = None,
    universe_build: str = "unknown",
    *,
    declared: object = None,
    max_peaks: int = 100_000,
    seed: int = 0,
) -> BuildDetection:
    """Tell whether peaks are on hg19 or hg38; see the module docstring for the evidence.

    Parameters
    ----------
    peaks
        The query's peaks (or fragments).
    universe
        The reference universe; with ``universe_build`` it enables the overlap evidence.
    universe_build
        The universe's build (any name :func:`normalize_build` knows).
    declared
        A build the data declares, weak evidence.
    max_peaks
        At most this many peaks are used (a seeded random sample beyond it).
    seed
        Seed of that sample.
    """
    if len(peaks) > max_peaks:
        pick = np.sort(np.random.default_rng(seed).choice(len(peaks), max_peaks, replace=False))
        peaks = GenomicRegions(peaks.chrom[pick], peaks.start[pick], peaks.end[pick])
    ref_build = normalize_build(universe_build)
    log_odds = 0.0  # of hg38 against hg19
    evidence: list[str] = []
    past_end = _past_end(peaks)
    if past_end["hg19"] and not past_end["hg38"]:
        log_odds += _DECISIVE
        evidence.append(f"{past_end['hg19']:,} peak(s) end past an hg19 chromosome's end.")
    elif past_end["hg38"] and not past_end["hg19"]:
        log_odds -= _DECISIVE
        evidence.append(f"{past_end['hg38']:,} peak(s) end past an hg38 chromosome's end.")
    elif past_end["hg38"]:
        evidence.append("Some peaks end past chromosome ends of both hg19 and hg38.")
    style = _contig_style(peaks)
    if style["hg38"] != style["hg19"]:
        winner = "hg38" if style["hg38"] > style["hg19"] else "hg19"
        log_odds += _DECISIVE if winner == "hg38" else -_DECISIVE
        evidence.append(f"{style[winner]:,} peak(s) lie on {winner}-style contigs.")
    overlap_as_is = overlap_lifted = None
    if universe is not None and len(peaks):
        as_is = map_peaks_to_universe(peaks, universe).peak_is_mapped
        overlap_as_is = float(as_is.mean())
        if ref_build in ("hg19", "hg38"):
            other = "hg38" if ref_build == "hg19" else "hg19"
            lifted = np.zeros(len(peaks), dtype=bool)
            try:
                result = lift_regions(peaks, chain_between(other, ref_build))
            except (GenomeBuildError, ChromosomeNamingError):
                result = None
            if result is not None and result.n_lifted:
                lifted[result.kept] = map_peaks_to_universe(result.regions, universe).peak_is_mapped
            overlap_lifted = float(lifted.mean())
            k_same, k_other = int((as_is & ~lifted).sum()), int((lifted & ~as_is).sum())
            term = _overlap_log_odds(k_same, k_other)
            log_odds += -term if ref_build == "hg19" else term
            evidence.append(
                f"{overlap_as_is:.1%} of the peaks overlap the {ref_build} universe as they are, "
                f"{overlap_lifted:.1%} after lifting them from {other} to {ref_build}."
            )
    declared_build = normalize_build(declared) if declared is not None else "unknown"
    if declared_build != "unknown":
        log_odds += _DECLARED_LOG_ODDS if declared_build == "hg38" else -_DECLARED_LOG_ODDS
        evidence.append(f"The data declares genome {declared}.")
    log_odds = max(min(log_odds, 40.0), -40.0)
    build = None if log_odds == 0 else ("hg38" if log_odds > 0 else "hg19")
    confidence = 1.0 / (1.0 + math.exp(-abs(log_odds)))
    return BuildDetection(
        build=build,
        confidence=confidence,
        reference_build=ref_build,
        overlap_as_is=overlap_as_is,
        overlap_lifted=overlap_lifted,
        past_end=past_end,
        contig_style=style,
        declared=None if declared is None else str(declared),
        evidence=tuple(evidence),
    )
