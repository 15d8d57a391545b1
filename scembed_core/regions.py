"""Genomic regions, the reference region universe, and peak -> universe overlap mapping.

A *universe* is the reference's ordered region vocabulary: region ``i`` of the universe
is word ``i`` of the Word2Vec model. A query dataset has its own peaks; each peak is
mapped to every universe region it overlaps by at least one base pair (half-open BED
intervals, per chromosome). The mapping is computed once per dataset as a sparse
peaks x universe matrix, so the per-cell work is a single sparse product.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import ChromosomeNamingError, CoordinateError, EmptyDataError, InputFormatError

__all__ = [
    "binary_signal",
    "GenomicRegions",
    "canonical_chrom",
    "PeakMapping",
    "map_peaks_to_universe",
    "parse_region_names",
    "reconcile_chromosome_names",
    "cells_by_universe",
]

#: A region name: chr1_100_600, chr1:100-600 or chr1-100-600 (chromosome, start, end).
NAME_PATTERN = re.compile(
    r"^(?P<chrom>[^:_\-\s]+(?:_[^:_\-\s]+)*?)[:_\-](?P<start>\d+)[_\-](?P<end>\d+)$"
)


#: Coordinates beyond this are beyond any genome (and near int64's limit): refused.
MAX_COORDINATE = 2**62
_MAX_DIGITS = 18


def _coordinates(values: object, what: str) -> np.ndarray:
    """``values`` as int64 coordinates; a typed error (not a wrap-around) when too large."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all() or (np.abs(array) > MAX_COORDINATE).any():
            bad = array[~finite | (np.abs(np.where(finite, array, 0)) > MAX_COORDINATE)][0]
            raise CoordinateError(
                f"A region {what} of {bad:.3g} is beyond any genome (or not a number)."
            )
    elif array.dtype.kind == "u" and array.size and array.max() > MAX_COORDINATE:
        raise CoordinateError(f"A region {what} of {int(array.max())} is beyond any genome.")
    try:
        return np.asarray(array, dtype=np.int64)
    except (OverflowError, ValueError, TypeError) as exc:
        raise CoordinateError(
            f"Region {what} coordinates are not integers within any genome ({exc})."
        ) from None


@dataclass(frozen=True)
class GenomicRegions:
    """An ordered list of half-open genomic intervals ``[start, end)``.

    Parameters
    ----------
    chrom
        Chromosome name of each region.
    start
        0-based start of each region (inclusive).
    end
        End of each region (exclusive).
    """

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "chrom", np.asarray(self.chrom, dtype=object).astype(str))
        object.__setattr__(self, "start", _coordinates(self.start, "start"))
        object.__setattr__(self, "end", _coordinates(self.end, "end"))
        if not (len(self.chrom) == len(self.start) == len(self.end)):
            raise CoordinateError(
                f"chrom, start and end differ in length "
                f"({len(self.chrom)}, {len(self.start)}, {len(self.end)})."
            )

    def __len__(self) -> int:
        return len(self.start)

    @property
    def names(self) -> np.ndarray:
        """Region names in the ``chr_start_end`` form the paper uses as Word2Vec words."""
        return (
            pd.Series(self.chrom)
            + "_"
            + pd.Series(self.start).astype(str)
            + "_"
            + pd.Series(self.end).astype(str)
        ).to_numpy(dtype=object)

    def validate(self, what: str = "regions") -> GenomicRegions:
        """Raise :class:`CoordinateError` for negative starts or ``start >= end``.

        Returns the regions themselves so calls can be chained.
        """
        if len(self) == 0:
            raise EmptyDataError(f"The {what} list is empty: at least one region is needed.")
        bad_neg = np.flatnonzero(self.start < 0)
        if bad_neg.size:
            i = bad_neg[0]
            raise CoordinateError(
                f"{bad_neg.size} {what} have a negative start, e.g. "
                f"{self.chrom[i]}:{self.start[i]}-{self.end[i]}. Coordinates must be 0-based, >= 0."
            )
        bad_order = np.flatnonzero(self.start >= self.end)
        if bad_order.size:
            i = bad_order[0]
            raise CoordinateError(
                f"{bad_order.size} {what} have start >= end, e.g. "
                f"{self.chrom[i]}:{self.start[i]}-{self.end[i]}. Expected half-open BED intervals."
            )
        return self

    def to_frame(self) -> pd.DataFrame:
        """Return the regions as a ``chr``/``start``/``end`` data frame."""
        return pd.DataFrame({"chr": self.chrom, "start": self.start, "end": self.end})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> GenomicRegions:
        """Build regions from a frame with ``chr``/``start``/``end`` (or ``chrom``) columns."""
        chrom_col = next(
            (c for c in ("chr", "chrom", "seqnames", "chromosome") if c in frame), None
        )
        if chrom_col is None or "start" not in frame or "end" not in frame:
            raise CoordinateError(
                f"Expected columns chr/start/end, found {list(frame.columns)[:10]}."
            )
        start = pd.to_numeric(frame["start"], errors="coerce")
        end = pd.to_numeric(frame["end"], errors="coerce")
        if start.isna().any() or end.isna().any():
            n = int(start.isna().sum() + end.isna().sum())
            raise CoordinateError(f"{n} start/end values are not integers.")
        return cls(frame[chrom_col].astype(str).to_numpy(), start.to_numpy(), end.to_numpy())

    @classmethod
    def from_names(cls, names: list[str] | np.ndarray | pd.Index) -> GenomicRegions:
        """Parse names like ``chr1_100_600``, ``chr1:100-600`` or ``chr1-100-600``."""
        return parse_region_names(names)

    @classmethod
    def read_bed(cls, path: str | Path) -> GenomicRegions:
        """Read the first three columns of a (optionally gzipped) BED file."""
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt") as handle:
                frame = pd.read_csv(
                    handle,
                    sep="\t",
                    header=None,
                    usecols=[0, 1, 2],
                    names=["chr", "start", "end"],
                    comment="#",
                    dtype={"chr": str},
                )
        except (OSError, EOFError, pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
            raise InputFormatError(f"Could not read BED file {path.name}: {exc}") from exc
        frame = frame[~frame["chr"].str.startswith(("track", "browser"))]
        return cls.from_frame(frame)

    def write_bed(self, path: str | Path) -> None:
        """Write the regions as a 3-column BED file (gzipped if the name ends in ``.gz``)."""
        self.to_frame().to_csv(path, sep="\t", header=False, index=False)


def parse_region_names(names: list[str] | np.ndarray | pd.Index) -> GenomicRegions:
    """Parse region names in the ``chr_start_end``, ``chr:start-end`` or ``chr-start-end`` forms.

    Raises
    ------
    CoordinateError
        If any name does not follow one of these forms.
    """
    series = pd.Series(np.asarray(names, dtype=object)).astype(str)
    parts = series.str.extract(NAME_PATTERN)
    huge = (parts["start"].str.len() > _MAX_DIGITS) | (parts["end"].str.len() > _MAX_DIGITS)
    if huge.any():
        raise CoordinateError(
            f"{int(huge.sum())} region names have a coordinate beyond any genome (more than "
            f"{_MAX_DIGITS} digits, e.g. {str(series[huge].iloc[0])[:60]!r})."
        )
    bad = parts["start"].isna()
    if bad.any():
        examples = ", ".join(repr(s) for s in series[bad].head(3))
        raise CoordinateError(
            f"{int(bad.sum())} of {len(series)} region names are not of the form "
            f"chr1_100_600, chr1:100-600 or chr1-100-600 (e.g. {examples}). "
            "Provide chr/start/end columns in var instead."
        )
    return GenomicRegions(
        parts["chrom"].to_numpy(), parts["start"].astype(np.int64), parts["end"].astype(np.int64)
    )


def canonical_chrom(name: str) -> str:
    """Canonical chromosome key: no ``chr`` prefix, mitochondria as ``M``."""
    key = name[3:] if name.lower().startswith("chr") else name
    return "M" if key.upper() in {"M", "MT"} else key


def reconcile_chromosome_names(
    query_chroms: np.ndarray | list[str], universe_chroms: np.ndarray | list[str]
) -> tuple[dict[str, str], list[str]]:
    """Map query chromosome names onto the universe's naming style.

    Exact names win; otherwise ``chr1`` matches ``1`` and ``chrM``/``chrMT``/``MT``/``M``
    match each other.

    Returns
    -------
    renamed
        Query names that were renamed, as ``{query_name: universe_name}``.
    unknown
        Query chromosome names with no counterpart in the universe (sorted).
    """
    universe_set = set(np.unique(np.asarray(universe_chroms, dtype=str)))
    canonical = {}
    for name in universe_set:
        canonical.setdefault(canonical_chrom(name), name)
    renamed: dict[str, str] = {}
    unknown: list[str] = []
    for name in np.unique(np.asarray(query_chroms, dtype=str)):
        if name in universe_set:
            continue
        target = canonical.get(canonical_chrom(name))
        if target is None:
            unknown.append(name)
        else:
            renamed[name] = target
    return renamed, sorted(unknown)


@dataclass
class PeakMapping:
    """Result of mapping query peaks onto a universe.

    Attributes
    ----------
    matrix
        Sparse ``n_peaks x n_universe`` CSR matrix, 1 where a peak overlaps a region.
    renamed_chromosomes
        Query chromosome names renamed to the universe's style (e.g. ``{"1": "chr1"}``).
    unknown_chromosomes
        Query chromosomes absent from the universe; their peaks are unmapped.
    """

    matrix: sp.csr_matrix
    renamed_chromosomes: dict[str, str] = field(default_factory=dict)
    unknown_chromosomes: list[str] = field(default_factory=list)

    @property
    def n_peaks(self) -> int:
        """Number of query peaks."""
        return self.matrix.shape[0]

    @property
    def peak_is_mapped(self) -> np.ndarray:
        """Boolean mask of peaks that overlap at least one universe region."""
        return np.diff(self.matrix.indptr) > 0

    @property
    def n_mapped_peaks(self) -> int:
        """Number of query peaks overlapping at least one universe region."""
        return int(self.peak_is_mapped.sum())

    @property
    def fraction_mapped(self) -> float:
        """Fraction of query peaks overlapping at least one universe region."""
        return self.n_mapped_peaks / self.n_peaks if self.n_peaks else 0.0

    def summary(self) -> dict:
        """Plain-data summary for reports and ``uns``."""
        return {
            "n_peaks": int(self.n_peaks),
            "n_mapped_peaks": self.n_mapped_peaks,
            "fraction_peaks_mapped": float(self.fraction_mapped),
            "renamed_chromosomes": dict(self.renamed_chromosomes),
            "unknown_chromosomes": list(self.unknown_chromosomes),
        }


#: Universe regions longer than this many times the median length (and at least 10 kb) are
#: searched apart from the others, so that one huge region cannot make every later query
#: scan the whole chromosome (the candidate window is bounded by the running max of ends).
LONG_REGION_FACTOR = 8
LONG_REGION_MIN_BP = 10_000
#: At most this many candidate (peak, region) pairs are expanded at once.
MAX_CANDIDATE_PAIRS = 20_000_000


def _candidate_windows(
    q_start: np.ndarray, q_end: np.ndarray, us: np.ndarray, ue: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last candidate region (start-sorted ``us``/``ue``) per query."""
    reach = np.maximum.accumulate(ue)
    hi = np.searchsorted(us, q_end, side="left")  # regions starting before the query ends
    lo = np.searchsorted(reach, q_start, side="right")  # first region that may end after q_start
    return lo, np.maximum(hi, lo)


def _expand_pairs(
    q_start: np.ndarray, lo: np.ndarray, hi: np.ndarray, ue: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs of the queries' windows, kept where the region ends after the start."""
    counts = hi - lo
    total = int(counts.sum())
    q_rep = np.repeat(np.arange(len(lo)), counts)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.repeat(lo, counts) + (np.arange(total) - offsets)
    keep = ue[pos] > q_start[q_rep]
    return q_rep[keep], pos[keep]


def _overlap_sorted(
    q_start: np.ndarray, q_end: np.ndarray, u_start: np.ndarray, u_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(u_start, kind="stable")
    us, ue = u_start[order], u_end[order]
    lo, hi = _candidate_windows(q_start, q_end, us, ue)
    counts = hi - lo
    if int(counts.sum()) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # bound the memory of the expansion: queries in blocks of at most MAX_CANDIDATE_PAIRS
    cumulative = np.cumsum(counts)
    cuts = np.searchsorted(
        cumulative,
        np.arange(1, cumulative[-1] // MAX_CANDIDATE_PAIRS + 1) * MAX_CANDIDATE_PAIRS,
        side="left",
    )
    bounds = np.unique(np.concatenate([[0], np.minimum(cuts + 1, len(counts)), [len(counts)]]))
    rows, cols = [], []
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        qi, pos = _expand_pairs(q_start[begin:end], lo[begin:end], hi[begin:end], ue)
        rows.append(qi + begin)
        cols.append(order[pos])
    return np.concatenate(rows), np.concatenate(cols)


def _overlap_pairs_one_chrom(
    q_start: np.ndarray, q_end: np.ndarray, u_start: np.ndarray, u_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All (query, universe) index pairs that overlap on one chromosome, vectorized.

    The universe is sorted by start; a running maximum of ends bounds the first region
    that can reach a query start, so regions of any length (overlapping each other or
    not) are handled exactly. Unusually long regions are searched as a set of their own:
    mixed with the others, one chromosome-long region would keep the running maximum
    ahead of every later query and make the candidate pairs quadratic.
    """
    if len(u_start) == 0 or len(q_start) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    lengths = u_end - u_start
    threshold = max(LONG_REGION_MIN_BP, LONG_REGION_FACTOR * float(np.median(lengths)))
    long = lengths > threshold
    if not long.any():
        return _overlap_sorted(q_start, q_end, u_start, u_end)
    rows, cols = [], []
    for subset in (np.flatnonzero(~long), np.flatnonzero(long)):
        if len(subset):
            qi, ui = _overlap_sorted(q_start, q_end, u_start[subset], u_end[subset])
            rows.append(qi)
            cols.append(subset[ui])
    return np.concatenate(rows), np.concatenate(cols)


def map_peaks_to_universe(peaks: GenomicRegions, universe: GenomicRegions) -> PeakMapping:
    """Map each query peak to every universe region it overlaps by >= 1 bp.

    Parameters
    ----------
    peaks
        The query dataset's peaks (in any order).
    universe
        The reference region universe.

    Returns
    -------
    PeakMapping
        Sparse peaks x universe overlap matrix plus naming diagnostics.

    Raises
    ------
    ChromosomeNamingError
        If no query chromosome matches a universe chromosome even after reconciling
        ``chr1``/``1`` and ``chrM``/``MT`` naming.
    """
    renamed, unknown = reconcile_chromosome_names(peaks.chrom, universe.chrom)
    q_chrom = pd.Series(peaks.chrom).replace(renamed).to_numpy() if renamed else peaks.chrom
    known_query = set(np.unique(peaks.chrom)) - set(unknown)
    if len(peaks) and not known_query:
        raise ChromosomeNamingError(
            f"None of the query's chromosomes ({', '.join(sorted(set(peaks.chrom))[:5])}, ...) "
            f"exist in the reference universe ({', '.join(sorted(set(universe.chrom))[:5])}, ...). "
            "Check the genome build and the species of the reference."
        )
    rows, cols = [], []
    u_groups = pd.Series(np.arange(len(universe))).groupby(universe.chrom).indices
    q_groups = pd.Series(np.arange(len(peaks))).groupby(q_chrom).indices
    for chrom, q_idx in q_groups.items():
        u_idx = u_groups.get(chrom)
        if u_idx is None:
            continue
        qi, ui = _overlap_pairs_one_chrom(
            peaks.start[q_idx], peaks.end[q_idx], universe.start[u_idx], universe.end[u_idx]
        )
        rows.append(q_idx[qi])
        cols.append(u_idx[ui])
    row = np.concatenate(rows) if rows else np.empty(0, np.int64)
    col = np.concatenate(cols) if cols else np.empty(0, np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(row), dtype=np.float32), (row, col)), shape=(len(peaks), len(universe))
    )
    return PeakMapping(
        matrix=binary_signal(matrix), renamed_chromosomes=renamed, unknown_chromosomes=unknown
    )


def cells_by_universe(cells_by_peaks: sp.spmatrix, mapping: PeakMapping) -> sp.csr_matrix:
    """Binary cells x universe matrix: a cell covers a region if any of its peaks hits it.

    This is the per-dataset sparse product ``X @ M`` followed by binarisation; a region
    hit by two peaks of the same cell counts once (set semantics).
    """
    x = sp.csr_matrix(cells_by_peaks, dtype=np.float32)
    if x.shape[1] != mapping.n_peaks:
        raise InputFormatError(
            f"The matrix has {x.shape[1]} peaks but the mapping was built for {mapping.n_peaks}."
        )
    return binary_signal(binary_signal(x) @ mapping.matrix)


def binary_signal(matrix: Any) -> sp.csr_matrix:
    """Binarise (the one rule): a cell has signal where its value is > 0.

    Every reader, projection, training and benchmark path binarises through this
    function. Duplicate entries are summed first (the matrix's value, as scipy defines
    it), then each positive value becomes 1.0; zeros, negative values and NaN are dropped.

    Parameters
    ----------
    matrix
        Cells x features, sparse (any format) or dense, numbers of any dtype.

    Returns
    -------
    scipy.sparse.csr_matrix
        Canonical (sorted, unique indices) float32 CSR matrix whose stored entries are
        all 1.0. The input is never modified; it is returned as is when it already is
        such a matrix, and shares its index arrays when only its values change (counts:
        read-only by convention, like every matrix the readers return).
    """
    if sp.issparse(matrix):
        x = matrix if matrix.format == "csr" else matrix.tocsr()
    else:
        x = sp.csr_matrix(np.asarray(matrix))
    if x.dtype == np.float32 and x.has_canonical_format and (x.data == 1.0).all():
        return x
    if not x.has_canonical_format:
        x = x.copy() if x is matrix else x  # never reorder the caller's arrays
        x.sum_duplicates()
    keep = x.data > 0  # False for zeros, negative values and NaN
    if keep.all():  # counts: only the values change; the index arrays are shared, not copied
        ones = np.ones(len(x.data), dtype=np.float32)
        return sp.csr_matrix((ones, x.indices, x.indptr), shape=x.shape, copy=False)
    kept = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    indptr = kept[x.indptr].astype(x.indptr.dtype)
    indices = x.indices[keep]  # a new array: the input's are never shared or changed
    ones = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((ones, indices, indptr), shape=x.shape)
