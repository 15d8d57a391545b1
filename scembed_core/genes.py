"""Gene annotations shipped with the package, and the nearest gene of every region.

The tables in ``scembed_core/data/genes/`` (``genes_hg19.tsv.gz``: ArchR's hg19 gene model,
MIT; ``genes_hg38.tsv.gz``: Bioconductor org.Hs.eg.db 3.16.0 / UCSC refGene, Artistic-2.0;
``PROVENANCE.md`` there says how they were made and checked) hold one row per gene: its
full extent as a half-open BED interval, strand, HGNC symbol and Entrez ID. The TSS is
``start`` on the ``+`` strand and ``end - 1`` on the ``-`` strand (ArchR's convention).

:func:`nearest_genes` annotates regions all at once (one sorted search per chromosome, no
loop over regions): the nearest TSS, its strand-aware signed distance, and whether the
region lies in a promoter (within ``promoter`` bp of a TSS), in a gene body, or neither.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import GenomeBuildError, InputFormatError
from .regions import GenomicRegions, canonical_chrom, parse_region_names

__all__ = ["GENE_DIR", "GENOMES", "PROMOTER_BP", "load_annotation", "nearest_genes"]

#: Folder of the shipped annotation tables.
GENE_DIR = Path(__file__).resolve().parent / "data" / "genes"
#: Builds with a shipped annotation.
GENOMES = ("hg19", "hg38")
#: Half-width of a promoter around the TSS, in bp (a region within this distance is "promoter").
PROMOTER_BP = 2000

_COLUMNS = ["chrom", "start", "end", "strand", "symbol", "gene_id", "gene_type"]


def _build_name(genome: str) -> str:
    from .liftover.builds import normalize_build

    build = normalize_build(genome)
    if build not in GENOMES:
        raise GenomeBuildError(
            f"No gene annotation for genome {genome!r}: scEmbed ships hg19 (GRCh37) and "
            "hg38 (GRCh38) annotations."
        )
    return build


@functools.cache
def _annotation(build: str) -> pd.DataFrame:
    frame = pd.read_csv(
        GENE_DIR / f"genes_{build}.tsv.gz",
        sep="\t",
        dtype={
            "chrom": str,
            "start": np.int64,
            "end": np.int64,
            "strand": str,
            "symbol": str,
            "gene_id": str,
            "gene_type": str,
        },  # fmt: skip
        keep_default_na=False,
    )
    frame = frame[_COLUMNS]
    frame["tss"] = np.where(frame["strand"].to_numpy() == "+", frame["start"], frame["end"] - 1)
    frame.index = pd.Index(frame["symbol"].to_numpy(), name="symbol_index")
    for column in frame.columns:  # the cached arrays are shared: make them read-only
        values = frame[column].to_numpy()
        if isinstance(values, np.ndarray):
            values.flags.writeable = False
    return frame


def load_annotation(genome: str) -> pd.DataFrame:
    """Return the shipped gene annotation of a genome build.

    Parameters
    ----------
    genome
        ``hg19``/``hg38`` or any of their names (``GRCh37``, ``GRCh38``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per gene, sorted by chromosome then start, indexed by symbol, with the
        columns ``chrom`` (UCSC names), ``start`` (0-based), ``end`` (exclusive),
        ``strand`` (``+``/``-``), ``symbol`` (unique), ``gene_id`` (Entrez, as text,
        unique), ``gene_type`` and ``tss`` (0-based). The table is read once per process;
        each call returns a copy, so callers may change theirs.

    Raises
    ------
    GenomeBuildError
        If no annotation ships for ``genome``.
    """
    return _annotation(_build_name(genome)).copy()


def _as_regions(regions: GenomicRegions | pd.DataFrame | pd.Index | list[str]) -> GenomicRegions:
    if isinstance(regions, GenomicRegions):
        return regions
    if isinstance(regions, pd.DataFrame):
        missing = {"chrom", "start", "end"} - set(regions.columns)
        if missing:
            raise InputFormatError(f"The regions table lacks the column(s) {sorted(missing)}.")
        return GenomicRegions.from_frame(regions)
    return parse_region_names(regions)


@functools.cache
def _index(build: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Per canonical chromosome: TSS order, sorted TSS, merged gene-body intervals."""
    table = _annotation(build)
    index: dict[str, tuple[np.ndarray, ...]] = {}
    for chrom, rows in table.groupby("chrom", sort=False).indices.items():
        index[canonical_chrom(str(chrom))] = _chrom_index(table, rows)
    return index


def _chrom_index(table: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    tss = table["tss"].to_numpy()[rows]
    symbols = table["symbol"].to_numpy()[rows]
    order = np.lexsort((symbols, tss))  # by TSS, ties by symbol
    starts = table["start"].to_numpy()[rows]
    ends = table["end"].to_numpy()[rows]
    by_start = np.argsort(starts, kind="stable")
    s, e = starts[by_start], np.maximum.accumulate(ends[by_start])
    # merge overlapping gene bodies: a new block starts where start >= max end so far
    new_block = np.r_[True, s[1:] >= e[:-1]]
    block_start = s[new_block]
    block_end = e[np.r_[new_block[1:], True]]  # the running max at each block's last gene
    return rows[order], tss[order], block_start, block_end


def nearest_genes(
    regions: GenomicRegions | pd.DataFrame | pd.Index | list[str],
    genome: str | pd.DataFrame,
    *,
    promoter: int = PROMOTER_BP,
) -> pd.DataFrame:
    """Find the gene with the nearest TSS of each region, and call promoter or gene body.

    Distances are between the region (half-open ``[start, end)``) and the TSS base: 0
    when the region contains the TSS. Ties go to the TSS at the lower coordinate, then to
    the alphabetically first symbol. Chromosome names match across styles (``chr1`` and
    ``1``). Regions on a chromosome with no annotated gene (a contig, chrM) get no gene.

    Parameters
    ----------
    regions
        The regions: a :class:`~scembed_core.regions.GenomicRegions`, a table with
        ``chrom``/``start``/``end`` columns, or region names (``chr1:100-600``).
    genome
        A build name (``hg19``, ``hg38``, ...) or an annotation table with the columns of
        :func:`load_annotation` (``chrom, start, end, strand, symbol, gene_id``).
    promoter
        A region within this many bp of a TSS is a promoter region (default 2 kb).

    Returns
    -------
    pandas.DataFrame
        One row per region, in order, with ``gene`` (symbol; ``""`` when none),
        ``gene_id``, ``gene_strand``, ``tss_distance`` (float bp, strand-aware: negative
        upstream of the TSS, positive downstream into the gene; NaN when no gene) and
        ``location``: ``promoter``, ``gene_body`` (overlaps a gene but no promoter),
        ``distal`` or ``no_gene_on_chromosome``.

    Raises
    ------
    GenomeBuildError
        If ``genome`` names a build without an annotation.
    InputFormatError
        If the regions or the annotation table are malformed.
    """
    regs = _as_regions(regions)
    if isinstance(genome, pd.DataFrame):
        table = _custom_annotation(genome)
        index = {
            canonical_chrom(str(c)): _chrom_index(table, rows)
            for c, rows in table.groupby("chrom", sort=False).indices.items()
        }
    else:
        build = _build_name(genome)
        table, index = _annotation(build), _index(build)
    n = len(regs)
    gene_row = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan)
    in_body = np.zeros(n, dtype=bool)
    canon = pd.Series(regs.chrom).map(canonical_chrom).to_numpy()
    for chrom, rows in pd.Series(np.arange(n)).groupby(canon, sort=False).indices.items():
        if chrom not in index:
            continue
        gene_rows, tss, block_start, block_end = index[chrom]
        start, end = regs.start[rows], regs.end[rows]
        row, dist = _nearest_tss(start, end, tss)
        gene_row[rows] = gene_rows[row]
        # signed: + when the region lies 3' of the TSS along the gene's strand
        right = regs.start[rows] > tss[row]
        plus = table["strand"].to_numpy()[gene_rows[row]] == "+"
        distance[rows] = np.where(right == plus, dist, -dist).astype(float)
        block = np.searchsorted(block_start, end, side="left") - 1
        in_body[rows] = (block >= 0) & (block_end[np.maximum(block, 0)] > start)
    found = gene_row >= 0
    safe = np.maximum(gene_row, 0)
    location = np.where(
        ~found,
        "no_gene_on_chromosome",
        np.where(
            np.abs(np.nan_to_num(distance, nan=np.inf)) <= promoter,
            "promoter",
            np.where(in_body, "gene_body", "distal"),
        ),
    )
    return pd.DataFrame(
        {
            "gene": np.where(found, table["symbol"].to_numpy()[safe], ""),
            "gene_id": np.where(found, table["gene_id"].astype(str).to_numpy()[safe], ""),
            "gene_strand": np.where(found, table["strand"].to_numpy()[safe], ""),
            "tss_distance": distance,
            "location": location,
        },
        index=pd.Index(regs.names, name="region"),
    )


def _nearest_tss(
    start: np.ndarray, end: np.ndarray, tss: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index into the sorted ``tss`` of each region's nearest TSS, and the distance."""
    m = len(tss)
    right = np.searchsorted(tss, start, side="left")  # first TSS >= start
    left = right - 1  # last TSS < start
    r = np.minimum(right, m - 1)
    d_right = np.where(right < m, np.maximum(tss[r] - (end - 1), 0), np.iinfo(np.int64).max)
    d_left = np.where(left >= 0, start - tss[np.maximum(left, 0)], np.iinfo(np.int64).max)
    take_left = d_left <= d_right  # ties: the lower coordinate
    chosen_pos = np.where(take_left, tss[np.maximum(left, 0)], tss[r])
    # among TSSs at the same coordinate, the first one (alphabetically first symbol)
    chosen = np.searchsorted(tss, chosen_pos, side="left")
    return chosen, np.where(take_left, d_left, d_right)


def _custom_annotation(frame: pd.DataFrame) -> pd.DataFrame:
    missing = {"chrom", "start", "end", "strand", "symbol"} - set(frame.columns)
    if missing:
        raise InputFormatError(f"The gene annotation lacks the column(s) {sorted(missing)}.")
    table = frame.reset_index(drop=True).copy()
    if not table["strand"].isin(["+", "-"]).all():
        raise InputFormatError("The gene annotation's strand must be '+' or '-' on every row.")
    if "gene_id" not in table:
        table["gene_id"] = table["symbol"]
    table["tss"] = np.where(table["strand"] == "+", table["start"], table["end"] - 1)
    return table
