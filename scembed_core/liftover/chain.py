"""UCSC chain files parsed once into flat numpy block arrays, and their swap.

A chain file (https://genome.ucsc.edu/goldenPath/help/chain.html) is a list of chains::

    chain score tName tSize tStrand tStart tEnd qName qSize qStrand qStart qEnd id
    size dt dq
    ...
    size

Each chain aligns a stretch of a *source* (target, ``t``) contig to a *destination* (query,
``q``) contig as ungapped blocks separated by gaps ``dt``/``dq``. Query coordinates of a
``-`` strand chain count from the end of the reverse-complemented contig.

The parser never loops over lines in Python: the decompressed bytes are scanned with numpy
for line starts, the 25k header lines are tokenised in one ``split``, and every block number
is converted in one vectorised call. Block positions are cumulative sums within each chain.
Overlapping coverage (several chains over one source base, e.g. a primary chain and a chain
to an ``_alt`` contig) is resolved once into non-overlapping *pieces*, each pointing at the
preferred block: the chain to the same primary chromosome first, then any primary
chromosome, then ``_alt``/``_random``/``_fix``/``chrUn`` contigs; ties by chain score.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ChainFileError

__all__ = ["Chain", "read_chain", "parse_chain", "primary_chromosome"]

_PRIMARY = re.compile(r"^(?:chr)?(?:[1-9]|1[0-9]|2[0-2]|X|Y|M|MT)$", re.IGNORECASE)
_HEADER_FIELDS = 13


def primary_chromosome(name: str) -> str | None:
    """The primary chromosome a contig belongs to (``chr6_GL000250v2_alt`` -> ``chr6``).

    ``None`` for unplaced contigs (``chrUn_...``) and names that are not human chromosomes.
    """
    head = name.split("_", 1)[0]
    return head if _PRIMARY.match(head) else None


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


@dataclass(frozen=True)
class Chain:
    """A parsed liftover chain: source contigs, chains, and resolved aligned pieces.

    Immutable after it is built (all arrays are read-only), so one instance can be shared
    between threads and sessions.

    Attributes
    ----------
    name
        File name (and ``(swapped)`` for a swapped chain), for reports.
    source, target
        Genome builds inferred from the contig sizes (``hg19``, ``hg38`` or ``unknown``).
    contigs, contig_sizes
        Source contig names and lengths; ``offsets`` places each contig on one global
        axis (with a 1 bp gap between contigs) so a single ``searchsorted`` serves them all.
    chain_score, chain_dest, chain_dest_size, chain_minus
        Per chain: score, destination contig name, its length and whether the
        destination strand is ``-``.
    piece_start, piece_end, piece_chain, piece_delta, piece_cum
        Non-overlapping aligned pieces on the global source axis, sorted: the chain used,
        ``dest = global_position + piece_delta`` (in destination strand coordinates), and
        the aligned bases before each piece (for aligned fractions).
    n_blocks
        Number of ungapped blocks in the file.
    """

    name: str
    source: str
    target: str
    contigs: np.ndarray
    contig_sizes: np.ndarray
    offsets: np.ndarray
    chain_score: np.ndarray
    chain_dest: np.ndarray
    chain_dest_size: np.ndarray
    chain_minus: np.ndarray
    piece_start: np.ndarray
    piece_end: np.ndarray
    piece_chain: np.ndarray
    piece_delta: np.ndarray
    piece_cum: np.ndarray
    n_blocks: int
    _blocks: tuple = ()  # per block: chain, source start, dest start, size; chain contig

    @property
    def n_chains(self) -> int:
        """Number of chains."""
        return len(self.chain_score)

    @property
    def destination_contigs(self) -> np.ndarray:
        """Destination contig names."""
        return np.unique(self.chain_dest)

    def swap(self) -> Chain:
        """The same alignment read the other way (UCSC ``chainSwap``).

        A ``+`` block ``t[a, a+L) -> q[b, b+L)`` becomes ``q[b, b+L) -> t[a, a+L)``. A ``-``
        block maps ``t[a, a+L)`` onto reverse-strand query coordinates ``[b, b+L)``, that is
        forward ``[qSize-b-L, qSize-b)``; swapped, the new source range is that forward range
        and the new destination is ``[tSize-a-L, tSize-a)`` on the reverse strand.
        """
        chain, t_start, q_start, size, chain_contig = self._blocks
        minus = self.chain_minus[chain]
        q_size = self.chain_dest_size[chain]
        t_size = self.contig_sizes[chain_contig[chain]]
        new_t_start = np.where(minus, q_size - q_start - size, q_start)
        new_q_start = np.where(minus, t_size - t_start - size, t_start)
        code, names = pd.factorize(pd.Series(self.chain_dest, dtype=object))
        sizes = pd.Series(self.chain_dest_size).groupby(code).first().to_numpy()
        return _assemble(
            name=f"{self.name} (swapped)",
            source=self.target,
            target=self.source,
            contigs=np.asarray(names, dtype=object),
            contig_sizes=sizes.astype(np.int64),
            chain_score=self.chain_score,
            chain_contig=code.astype(np.int64),
            chain_dest=self.contigs[chain_contig],
            chain_dest_size=self.contig_sizes[chain_contig],
            chain_minus=self.chain_minus,
            block_chain=chain,
            block_t_start=new_t_start.astype(np.int64),
            block_q_start=new_q_start.astype(np.int64),
            block_size=size,
        )

    def renamed(self, name: str) -> Chain:
        """The same chain under another display name."""
        return replace(self, name=name)


def _infer_build(names: np.ndarray, sizes: np.ndarray) -> str:
    from .builds import CHROMOSOME_SIZES

    table = dict(zip(names.tolist(), sizes.tolist(), strict=True))
    for build, lengths in CHROMOSOME_SIZES.items():
        shared = [c for c in lengths if c in table and c != "chrM"]
        if shared and all(table[c] == lengths[c] for c in shared):
            return build
    return "unknown"


def _rank(source_names: np.ndarray, dest_names: np.ndarray) -> np.ndarray:
    """0: same primary chromosome, 1: another primary chromosome, 2: alt/random/fix/Un."""
    src = pd.Series(source_names, dtype=object).map(primary_chromosome)
    dst_primary = pd.Series(dest_names, dtype=object).str.match(_PRIMARY.pattern, case=False)
    dst = pd.Series(dest_names, dtype=object)
    same = dst_primary & (
        dst.str.lower().str.removeprefix("chr") == src.str.lower().str.removeprefix("chr")
    )
    return np.where(same, 0, np.where(dst_primary, 1, 2)).astype(np.int64)


def _assemble(
    *,
    name: str,
    source: str,
    target: str,
    contigs: np.ndarray,
    contig_sizes: np.ndarray,
    chain_score: np.ndarray,
    chain_contig: np.ndarray,
    chain_dest: np.ndarray,
    chain_dest_size: np.ndarray,
    chain_minus: np.ndarray,
    block_chain: np.ndarray,
    block_t_start: np.ndarray,
    block_q_start: np.ndarray,
    block_size: np.ndarray,
) -> Chain:
    """Resolve overlapping coverage into sorted non-overlapping pieces and build a Chain."""
    offsets = np.concatenate(([0], np.cumsum(contig_sizes + 1)[:-1])).astype(np.int64)
    block_contig = chain_contig[block_chain]
    gs = offsets[block_contig] + block_t_start
    ge = gs + block_size
    delta = block_q_start - gs  # dest = global position + delta
    order = np.argsort(gs, kind="stable")
    gs, ge, delta, bchain = gs[order], ge[order], delta[order], block_chain[order]
    reach = np.maximum.accumulate(ge)
    if len(gs) > 1 and (gs[1:] < reach[:-1]).any():
        rank = _rank(contigs[chain_contig], chain_dest)
        bounds = np.unique(np.concatenate((gs, ge)))
        lo = np.searchsorted(bounds, gs)
        hi = np.searchsorted(bounds, ge)
        counts = hi - lo
        block = np.repeat(np.arange(len(gs)), counts)
        seg = np.repeat(lo, counts) + (
            np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        c = bchain[block]
        keys = np.lexsort((c, -chain_score[c], rank[c], seg))
        seg, block = seg[keys], block[keys]
        first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        seg, block = seg[first], block[first]
        p_start, p_end = bounds[seg], bounds[seg + 1]
        # Merge consecutive elementary segments of one block back into one piece.
        new = np.r_[True, (block[1:] != block[:-1]) | (p_start[1:] != p_end[:-1])]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(block)] - 1
        gs, ge = p_start[starts], p_end[ends]
        delta, bchain = delta[block[starts]], bchain[block[starts]]
    lengths = ge - gs
    cum = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    blocks = (block_chain, block_t_start, block_q_start, block_size, chain_contig)
    arrays = (gs, ge, bchain, delta, cum, offsets, contig_sizes, *blocks)
    _readonly(*arrays, chain_score, chain_dest, chain_dest_size, chain_minus)
    return Chain(
        name=name,
        source=source,
        target=target,
        contigs=np.asarray(contigs, dtype=object),
        contig_sizes=contig_sizes,
        offsets=offsets,
        chain_score=chain_score,
        chain_dest=chain_dest,
        chain_dest_size=chain_dest_size,
        chain_minus=chain_minus,
        piece_start=gs,
        piece_end=ge,
        piece_chain=bchain,
        piece_delta=delta,
        piece_cum=cum,
        n_blocks=int(len(block_size)),
        _blocks=blocks,
    )


def _line_mask(n: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Boolean mask of the bytes of the given lines (newline included), without a loop."""
    marker = np.zeros(n + 1, dtype=np.int32)
    np.add.at(marker, starts, 1)
    np.add.at(marker, np.minimum(ends + 1, n), -1)
    return np.cumsum(marker[:-1]) > 0


def _bad(name: str, what: str) -> ChainFileError:
    return ChainFileError(
        f"{name} is not a valid UCSC chain file: {what}. Expected 'chain score tName tSize "
        "tStrand tStart tEnd qName qSize qStrand qStart qEnd id' headers followed by "
        "'size dt dq' block lines (https://genome.ucsc.edu/goldenPath/help/chain.html); "
        "download the file again."
    )


def parse_chain(raw: bytes, name: str = "chain") -> Chain:
    """Parse the (decompressed) text of a chain file; see :func:`read_chain`."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    if arr.size == 0:
        raise _bad(name, "the file is empty")
    newline = np.flatnonzero(arr == 10)
    line_start = np.concatenate(([0], newline + 1))
    line_end = np.concatenate((newline, [arr.size]))
    keep = line_end > line_start
    line_start, line_end = line_start[keep], line_end[keep]
    first = arr[line_start]
    blank = np.isin(first, (ord("#"), ord("\r"), ord(" "), ord("\t")))
    probe = np.minimum(line_start[:, None] + np.arange(6), arr.size - 1)
    is_header = (arr[probe] == np.frombuffer(b"chain ", np.uint8)).all(axis=1)
    is_block = ~(is_header | blank)
    if not is_header.any():
        raise _bad(name, "no 'chain' header line was found")
    in_header = _line_mask(arr.size, line_start[is_header], line_end[is_header])
    tokens = arr[in_header].tobytes().split()
    n_chains = int(is_header.sum())
    if len(tokens) != _HEADER_FIELDS * n_chains:
        raise _bad(name, f"{n_chains:,} header lines hold {len(tokens):,} fields, not 13 each")
    head = np.array(tokens, dtype=object).reshape(n_chains, _HEADER_FIELDS)
    try:
        score = head[:, 1].astype(float)
        ints = head[:, [3, 5, 6, 8, 10, 11]].astype(np.int64)
    except ValueError as exc:
        raise _bad(name, f"a header holds a non-numeric size or position ({exc})") from exc
    t_size, t_start, t_end, q_size, q_start, q_end = ints.T
    t_strand = head[:, 4]
    q_strand = head[:, 9]
    if (t_strand != b"+").any():
        raise _bad(name, "a chain has source (target) strand '-'; liftOver chains use '+'")
    if not np.isin(q_strand, (b"+", b"-")).all():
        raise _bad(name, "a chain's query strand is neither '+' nor '-'")
    text = arr.copy()
    text[_line_mask(arr.size, line_start[~is_block], line_end[~is_block])] = ord(" ")
    try:
        numbers = np.array(text.tobytes().split(), dtype=np.int64) if is_block.any() else None
    except ValueError as exc:
        raise _bad(name, f"a block line holds a non-integer ({exc})") from exc
    header_pos = np.flatnonzero(is_header)
    block_pos = np.flatnonzero(is_block)
    owner = np.searchsorted(header_pos, block_pos, side="right") - 1
    if numbers is None or (owner < 0).any():
        raise _bad(name, "block lines come before the first header or are missing")
    n_per_chain = np.bincount(owner, minlength=n_chains)
    if (n_per_chain == 0).any():
        raise _bad(name, f"{int((n_per_chain == 0).sum())} chain(s) have no blocks (truncated?)")
    expected = 3 * n_per_chain - 2
    if numbers.size != expected.sum():
        raise _bad(name, "block lines do not hold 'size dt dq' (and a last 'size')")
    ends = np.cumsum(expected)
    triples = np.insert(numbers, np.repeat(ends, 2), 0).reshape(-1, 3)
    size, dt, dq = triples[:, 0], triples[:, 1], triples[:, 2]
    if (size <= 0).any() or (dt < 0).any() or (dq < 0).any():
        raise _bad(name, "a block size is not positive or a gap is negative")
    chain = np.repeat(np.arange(n_chains), n_per_chain)
    first_block = np.concatenate(([0], np.cumsum(n_per_chain)[:-1]))
    step_t, step_q = size + dt, size + dq
    ex_t = np.cumsum(step_t) - step_t
    ex_q = np.cumsum(step_q) - step_q
    b_t = t_start[chain] + ex_t - ex_t[first_block][chain]
    b_q = q_start[chain] + ex_q - ex_q[first_block][chain]
    last = first_block + n_per_chain - 1
    if (b_t[last] + size[last] != t_end).any() or (b_q[last] + size[last] != q_end).any():
        raise _bad(name, "block sizes and gaps do not add up to the header's start and end")
    if (t_end > t_size).any() or (q_end > q_size).any() or (t_start < 0).any():
        raise _bad(name, "a chain reaches past the end of its contig")
    t_names_raw = pd.Series(head[:, 2]).str.decode("ascii", errors="replace")
    q_names = pd.Series(head[:, 7]).str.decode("ascii", errors="replace").to_numpy(dtype=object)
    t_code, t_names = pd.factorize(t_names_raw)
    t_names = np.asarray(t_names, dtype=object)
    contig_sizes = pd.Series(t_size).groupby(t_code).first().to_numpy().astype(np.int64)
    source = _infer_build(t_names, contig_sizes)
    dest_names, dest_first = np.unique(q_names, return_index=True)
    target = _infer_build(dest_names, q_size[dest_first])
    return _assemble(
        name=name,
        source=source,
        target=target,
        contigs=t_names,
        contig_sizes=contig_sizes,
        chain_score=score,
        chain_contig=t_code.astype(np.int64),
        chain_dest=q_names,
        chain_dest_size=q_size,
        chain_minus=q_strand == b"-",
        block_chain=chain,
        block_t_start=b_t,
        block_q_start=b_q,
        block_size=size,
    )


def read_chain(path: str | Path) -> Chain:
    """Read a UCSC chain file (gzipped or plain) into a :class:`Chain`.

    Raises
    ------
    ChainFileError
        The file is truncated, not gzip, not a chain file, or internally inconsistent.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChainFileError(f"Could not read the chain file {path}: {exc.strerror}.") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ChainFileError(
                f"{path.name} is a truncated or corrupt gzip file ({exc}); download the "
                "chain file again."
            ) from exc
    return parse_chain(data, name=path.name)
