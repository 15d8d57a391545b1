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
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ChainFileError
from .sizes import CHROMOSOME_SIZES

__all__ = ["Chain", "read_chain", "parse_chain", "primary_chromosome"]

_PRIMARY = re.compile(r"^(?:chr)?(?:[1-9]|1[0-9]|2[0-2]|X|Y|M|MT)$", re.IGNORECASE)


def primary_chromosome(name: str) -> str | None:
    """Return the primary chromosome a contig belongs to (``chr6_GL000250v2_alt`` -> ``chr6``).

    ``None`` for unplaced contigs (``chrUn_...``) and names that are not human chromosomes.
    """
    head = name.split("_", 1)[0]
    return head if _PRIMARY.match(head) else None


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


@dataclass(frozen=True, eq=False, repr=False)
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

    def swap(self) -> Chain:
        """Return the same alignment read the other way (UCSC ``chainSwap``).

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

    def __repr__(self) -> str:
        return (
            f"Chain({self.name!r}: {self.source} -> {self.target}, {self.n_chains:,} chains, "
            f"{self.n_blocks:,} blocks, {len(self.piece_start):,} pieces)"
        )


def _infer_build(names: np.ndarray, sizes: np.ndarray) -> str:
    table = dict(zip(names.tolist(), sizes.tolist(), strict=True))
    for build, lengths in CHROMOSOME_SIZES.items():
        shared = [c for c in lengths if c in table and c != "chrM"]
        if shared and all(table[c] == lengths[c] for c in shared):
            return build
    return "unknown"


def _rank(source_names: np.ndarray, dest_names: np.ndarray) -> np.ndarray:
    """0: same primary chromosome, 1: another primary chromosome, 2: alt/random/fix/Un.

    Names are classified once per distinct name, not once per chain.
    """
    src_u, src_i = np.unique(source_names.astype(str), return_inverse=True)
    dst_u, dst_i = np.unique(dest_names.astype(str), return_inverse=True)

    def key(name: str | None) -> str:
        return "" if name is None else name.lower().removeprefix("chr")

    src_key = np.array([key(primary_chromosome(n)) or "\0src" for n in src_u], dtype=object)
    dst_primary = np.array([bool(_PRIMARY.match(n)) for n in dst_u], dtype=bool)
    dst_key = np.array([key(n) for n in dst_u], dtype=object)
    primary = dst_primary[dst_i]
    same = primary & (src_key[src_i] == dst_key[dst_i])
    return np.where(same, 0, np.where(primary, 1, 2)).astype(np.int64)


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
        n_chains = len(chain_score)
        priority = np.empty(n_chains, np.int64)  # 0 = preferred chain
        priority[np.lexsort((np.arange(n_chains), -chain_score, rank))] = np.arange(n_chains)
        bounds = np.sort(np.concatenate((gs, ge)))
        bounds = bounds[np.r_[True, bounds[1:] != bounds[:-1]]]
        lo = np.searchsorted(bounds, gs)
        counts = np.searchsorted(bounds, ge) - lo
        block = np.repeat(np.arange(len(gs)), counts)
        seg = np.arange(counts.sum()) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
        # Each elementary segment goes to the covering block of the preferred chain (a
        # chain's own blocks never overlap, so there is exactly one such block).
        rank_of_pair = priority[bchain[block]]
        best = np.full(len(bounds), n_chains, np.int64)
        np.minimum.at(best, seg, rank_of_pair)
        chosen = rank_of_pair == best[seg]
        owner = np.full(len(bounds), -1, np.int64)
        owner[seg[chosen]] = block[chosen]
        seg = np.flatnonzero(owner >= 0)
        block = owner[seg]
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


def _bad(name: str, what: str) -> ChainFileError:
    return ChainFileError(
        f"{name} is not a valid UCSC chain file: {what}. Expected 'chain score tName tSize "
        "tStrand tStart tEnd qName qSize qStrand qStart qEnd id' headers followed by "
        "'size dt dq' block lines (https://genome.ucsc.edu/goldenPath/help/chain.html); "
        "download the file again."
    )


_HEADER = re.compile(rb"(?m)^(chain[ \t][^\n]*)")
_COMMENT = re.compile(rb"(?m)^#[^\n]*")
_HEADER_COLUMNS = ["chain", "score", "t_name", "t_size", "t_strand", "t_start", "t_end",
                   "q_name", "q_size", "q_strand", "q_start", "q_end", "id"]  # fmt: skip


def _read_headers(heads: list[bytes], name: str) -> pd.DataFrame:
    """Return the header lines as a frame (pandas' C parser; 25k lines in a few ms)."""
    text = b"\n".join(heads).replace(b"\t", b" ")
    try:
        frame = pd.read_csv(
            io.BytesIO(text), sep=" ", header=None, names=_HEADER_COLUMNS, skipinitialspace=True,
            dtype={"t_name": str, "q_name": str, "t_strand": str, "q_strand": str},
            keep_default_na=False, na_filter=False, engine="c",
        )  # fmt: skip
    except (pd.errors.ParserError, ValueError) as exc:
        raise _bad(name, f"a header line does not hold 13 fields ({exc})") from exc
    if len(frame) != len(heads) or (frame["id"].astype(str) == "").any():
        raise _bad(name, "a header line does not hold 13 fields")
    return frame


def parse_chain(raw: bytes, name: str = "chain") -> Chain:
    """Parse the (decompressed) text of a chain file; see :func:`read_chain`.

    Header lines are found with one regular expression over the whole text and read by
    pandas' C parser; all block numbers are converted in one ``np.fromstring`` call. The
    only Python-level iteration is one ``split`` per chain to count its numbers.
    """
    if not raw.strip():
        raise _bad(name, "the file is empty")
    if b"#" in raw:
        raw = _COMMENT.sub(b"", raw)
    parts = _HEADER.split(raw)  # [before, header 1, blocks 1, header 2, blocks 2, ...]
    heads, blocks = parts[1::2], parts[2::2]
    if not heads:
        raise _bad(name, "no 'chain' header line was found")
    if parts[0].strip():
        raise _bad(name, "block lines come before the first header")
    n_chains = len(heads)
    head = _read_headers(heads, name)
    try:
        score = head["score"].to_numpy(dtype=float)
        ints = head[["t_size", "t_start", "t_end", "q_size", "q_start", "q_end"]]
        ints = ints.to_numpy(dtype=np.int64)
    except (ValueError, TypeError) as exc:
        raise _bad(name, f"a header holds a non-numeric size or position ({exc})") from exc
    t_size, t_start, t_end, q_size, q_start, q_end = ints.T
    t_strand = head["t_strand"].to_numpy(dtype=object)
    q_strand = head["q_strand"].to_numpy(dtype=object)
    if (t_strand != "+").any():
        raise _bad(name, "a chain has source (target) strand '-'; liftOver chains use '+'")
    if not np.isin(q_strand, ("+", "-")).all():
        raise _bad(name, "a chain's query strand is neither '+' nor '-'")
    counts = np.fromiter((len(p.split()) for p in blocks), dtype=np.int64, count=n_chains)
    if (counts == 0).any():
        raise _bad(name, f"{int((counts == 0).sum())} chain(s) have no blocks (truncated?)")
    if (counts % 3 != 1).any():
        raise _bad(name, "block lines do not hold 'size dt dq' (and a last 'size')")
    try:
        numbers = np.fromstring(b" ".join(blocks), dtype=np.int64, sep=" ")
    except ValueError as exc:
        raise _bad(name, f"a block line holds a non-integer ({exc})") from exc
    if numbers.size != counts.sum():
        raise _bad(name, "a block line holds a non-integer")
    n_per_chain = (counts + 2) // 3
    ends = np.cumsum(counts)
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
    t_code, t_names = pd.factorize(head["t_name"])
    t_names = np.asarray(t_names, dtype=object)
    contig_sizes = np.zeros(len(t_names), np.int64)
    contig_sizes[t_code] = t_size
    q_names = head["q_name"].to_numpy(dtype=object)
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
        chain_minus=q_strand == "-",
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
