"""Fragments files: count fragments per barcode over a region universe, streamed in chunks."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import (
    ChromosomeNamingError,
    CoordinateError,
    EmptyDataError,
    InputFormatError,
    ScEmbedError,
)
from ..regions import GenomicRegions, map_peaks_to_universe, reconcile_chromosome_names
from ._budget import check_memory_budget
from ._files import DECOMPRESS_ERRORS, is_gzip, not_utf8, read_column_file
from ._normalize import Parsed, as_str, check_unique, finalize

if TYPE_CHECKING:
    from ..liftover import Chain


def read_barcode_list(path: str | Path) -> pd.Index:
    """Return the unique, non-empty barcodes of a one-per-line file."""
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"The barcode list {path} does not exist.")
    frame = read_column_file(path, "barcode list")
    values = pd.Index(as_str(frame[0].str.strip().to_numpy())).unique()
    values = values[values != ""]
    if len(values) == 0:
        raise EmptyDataError(f"The barcode list {path.name} is empty.")
    return values


def _lift_fragments(
    frags: GenomicRegions,
    local: np.ndarray,
    codes: np.ndarray,
    chain: Chain,
    tally: dict[str, int],
) -> tuple[GenomicRegions, np.ndarray, np.ndarray]:
    """Lift one chunk of fragments (vectorised) and count the lifted and dropped ones."""
    from ..liftover import lift_regions

    try:
        result = lift_regions(frags, chain)
    except ChromosomeNamingError:
        tally["unknown_contig"] = tally.get("unknown_contig", 0) + len(frags)
        return GenomicRegions(frags.chrom[:0], frags.start[:0], frags.end[:0]), local[:0], codes[:0]
    tally["n_lifted"] = tally.get("n_lifted", 0) + result.n_lifted
    for reason, n in result.dropped.items():
        tally[reason] = tally.get(reason, 0) + n
    return result.regions, local[result.kept], codes[result.kept]


class _NulGuard(io.RawIOBase):
    r"""The bytes of a (gzip) text file, refusing NUL bytes as they stream past.

    pandas' parser ends a field at NUL, so ``B\0X`` and ``B\0Y`` would both become cell
    ``B``: two cells silently merged. A text file never holds NUL; checking each block
    (``memchr``) costs nothing next to parsing it.
    """

    def __init__(self, path: Path) -> None:
        self._name = path.name
        self._handle = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        if b"\0" in data:
            raise InputFormatError(
                f"{self._name} holds a NUL byte (e.g. inside a cell barcode); a fragments file "
                "is plain text. The file is corrupt or not a fragments file."
            )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()


def read_fragment_sample(path: str | Path, n: int = 200_000) -> GenomicRegions:
    """Return the first ``n`` fragments of a fragments file, as regions (for build detection)."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path, sep="\t", header=None, comment="#", usecols=[0, 1, 2], nrows=n,
            names=["chr", "start", "end"], dtype={"chr": str},
            compression="gzip" if is_gzip(path) else None,
        )  # fmt: skip
    except UnicodeDecodeError as exc:
        raise not_utf8(path.name, exc) from exc
    except (pd.errors.ParserError, ValueError, *DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{path.name} could not be read as a fragments file ({exc}). Expected 5 "
            "tab-separated columns chr, start, end, barcode, count."
        ) from exc
    return GenomicRegions.from_frame(frame)


def parse_fragments(
    path: Path,
    universe: GenomicRegions,
    keep: pd.Index | None,
    min_fragments: int,
    max_bytes: int | None,
    chunksize: int,
    liftover: Chain | None = None,
) -> Parsed:
    """Count the fragments of each barcode over ``universe`` (see :func:`read_fragments`)."""
    source = path.name
    universe.validate("universe regions")
    check_unique(
        pd.Index(universe.names), "universe regions", "The universe", "Deduplicate the universe."
    )
    n_universe = len(universe)
    keep_set = set(keep) if keep is not None else None
    ids: dict[str, int] = {}
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    n_total = np.zeros(0, np.int64)
    n_overlap = np.zeros(0, np.int64)
    stats = {"n_fragments": 0, "n_fragments_overlapping": 0, "n_fragments_known_chrom": 0}
    renamed: dict[str, str] = {}
    unknown: set[str] = set()
    stored = 0
    lifted: dict[str, int] = {}
    guard = _NulGuard(path)
    try:
        reader = pd.read_csv(
            guard, sep="\t", header=None, comment="#", usecols=[0, 1, 2, 3],
            names=["chr", "start", "end", "barcode"], dtype={"chr": str, "barcode": str},
            chunksize=chunksize, keep_default_na=False, na_filter=False,
        )  # fmt: skip
        for chunk in reader:
            start = pd.to_numeric(chunk["start"], errors="coerce")
            end = pd.to_numeric(chunk["end"], errors="coerce")
            if start.isna().any() or end.isna().any():
                raise CoordinateError(
                    f"{source}: fragment start/end values are not integers (e.g. line with "
                    f"{chunk.iloc[int(np.flatnonzero(start.isna() | end.isna())[0])].tolist()})."
                )
            frags = GenomicRegions(chunk["chr"].to_numpy(), start.to_numpy(), end.to_numpy())
            frags.validate("fragments")
            local, uniques = pd.factorize(chunk["barcode"].to_numpy(dtype=object))
            gids = np.array([ids.setdefault(b, len(ids)) for b in uniques], dtype=np.int64)
            codes = gids[local]
            if len(ids) > len(n_total):
                n_total = np.pad(n_total, (0, len(ids) - len(n_total)))
                n_overlap = np.pad(n_overlap, (0, len(ids) - len(n_overlap)))
            n_total += np.bincount(codes, minlength=len(ids))
            stats["n_fragments"] += len(chunk)
            if liftover is not None:
                frags, local, codes = _lift_fragments(frags, local, codes, liftover, lifted)
            chunk_renamed, chunk_unknown = reconcile_chromosome_names(
                np.unique(frags.chrom), universe.chrom
            )
            renamed.update(chunk_renamed)
            unknown.update(chunk_unknown)
            mask = ~np.isin(frags.chrom, chunk_unknown)
            stats["n_fragments_known_chrom"] += int(mask.sum())
            if keep_set is not None:
                allowed = np.array([b in keep_set for b in uniques], dtype=bool)
                mask &= allowed[local]
            if not mask.any():
                continue
            sel = np.flatnonzero(mask)
            sub = GenomicRegions(frags.chrom[sel], frags.start[sel], frags.end[sel])
            hits = map_peaks_to_universe(sub, universe).matrix
            by_barcode = sp.csr_matrix(
                (np.ones(len(sel), np.float32), (codes[sel], np.arange(len(sel)))),
                shape=(len(ids), len(sel)),
            )
            counts = (by_barcode @ hits).tocoo()
            hit = np.diff(hits.indptr) > 0
            n_overlap += np.bincount(codes[sel][hit], minlength=len(ids))
            stats["n_fragments_overlapping"] += int(hit.sum())
            rows.append(counts.row.astype(np.int64))
            cols.append(counts.col.astype(np.int64))
            stored += counts.nnz
            check_memory_budget(len(ids), n_universe, stored, max_bytes, what=source)
    except (ScEmbedError, MemoryError):
        raise
    except UnicodeDecodeError as exc:
        raise not_utf8(source, exc) from exc
    except (pd.errors.ParserError, ValueError, *DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{source} could not be read as a fragments file ({exc}). Expected 5 tab-separated "
            "columns chr, start, end, barcode, count; the file may be truncated."
        ) from exc
    finally:
        guard.close()
    if stats["n_fragments"] == 0:
        raise EmptyDataError(f"{source} holds no fragments.")
    if stats["n_fragments_known_chrom"] == 0:
        raise ChromosomeNamingError(
            f"None of the fragments' chromosomes ({', '.join(sorted(unknown)[:5])}) exist in "
            f"the universe ({', '.join(sorted(set(universe.chrom))[:5])}, ...). Check the "
            "genome build and the species of the reference."
        )
    row = np.concatenate(rows) if rows else np.empty(0, np.int64)
    col = np.concatenate(cols) if cols else np.empty(0, np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(row), np.float32), (row, col)), shape=(len(ids), n_universe)
    )
    barcodes = np.array(list(ids), dtype=object)
    kept = n_overlap >= max(int(min_fragments), 0)
    if keep_set is not None:
        kept &= np.array([b in keep_set for b in barcodes], dtype=bool)
    kept_idx = np.flatnonzero(kept)
    obs = pd.DataFrame(
        {"n_fragments": n_overlap[kept_idx], "n_fragments_total": n_total[kept_idx]},
        index=pd.Index(barcodes[kept_idx], dtype=object),
    )
    info = {
        "n_barcodes_seen": len(ids),
        "n_barcodes_kept": int(kept_idx.size),
        "min_fragments": int(min_fragments),
        "renamed_chromosomes": {str(k): str(v) for k, v in renamed.items()},
        "unknown_chromosomes": sorted(str(c) for c in unknown),
        **stats,
    }
    if liftover is not None:
        info["liftover"] = {
            "chain": liftover.name,
            "source_build": liftover.source,
            "target_build": liftover.target,
            "what": "fragments",
            "n_peaks": int(stats["n_fragments"]),
            "n_lifted": int(lifted.pop("n_lifted", 0)),
            "n_dropped": int(sum(lifted.values())),
            "dropped": dict(lifted),
        }
    if kept_idx.size == 0:
        raise EmptyDataError(
            f"{source}: none of the {len(ids):,} barcodes has >= {min_fragments} fragments "
            "overlapping the universe. Lower min_fragments or check the barcode list and the "
            "genome build."
        )
    return Parsed(matrix[kept_idx], universe, obs, "fragments", info=info)


def read_fragments(
    path: str | Path,
    universe: GenomicRegions,
    *,
    barcodes: str | Path | None = None,
    min_fragments: int = 1,
    max_bytes: int | None = None,
    chunksize: int = 1_000_000,
    liftover: Chain | None = None,
) -> ad.AnnData:
    """Count fragments per barcode over a region universe, streaming the file in chunks.

    Parameters
    ----------
    path
        Fragments file (optionally gzipped): tab-separated chr, start, end, barcode, count;
        ``#`` lines are skipped.
    universe
        The regions to count over; they become the ``var`` of the result, in order.
    barcodes
        Optional file with one barcode per line; other barcodes are dropped.
    min_fragments
        Keep barcodes with at least this many fragments overlapping the universe.
    max_bytes
        Memory budget (default: half the free memory).
    chunksize
        Fragments per chunk.
    liftover
        A chain to lift the fragments through onto the universe's build before counting.

    Returns
    -------
    anndata.AnnData
        Binary barcodes x universe matrix; ``obs["n_fragments"]`` counts overlapping
        fragments, ``obs["n_fragments_total"]`` all fragments of the barcode, and
        ``uns["scembed_read"]`` how many barcodes were seen and kept.
    """
    path = Path(path)
    keep = read_barcode_list(barcodes) if barcodes is not None else None
    parsed = parse_fragments(path, universe, keep, min_fragments, max_bytes, chunksize, liftover)
    return finalize(parsed, source=path.name)
