"""Quality control of query cells before projection: metrics, thresholds, recorded filtering.

Per cell (:func:`cell_qc`): the number of peaks with signal, the number of reference
universe regions they cover, the fraction of its peaks in promoters (within
:data:`~scembed_core.genes.PROMOTER_BP` of an annotated TSS; needs an hg19/hg38 gene
annotation), and, for data read from a fragments file, the fraction of its fragments in
peaks (FRiP: fragments overlapping the reference universe over all its fragments) and the
TSS enrichment (:func:`tss_enrichment`, computed from the fragments file itself).

:func:`qc_pass` checks a table against :class:`QCThresholds` (one column per rule);
:func:`filter_cells` keeps the passing cells and records every filtered cell, with the
rules it failed, in ``uns["scembed_qc"]``: cells are never dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputFormatError, ParameterError
from .regions import canonical_chrom

if TYPE_CHECKING:
    import anndata as ad

__all__ = [
    "QC_KEY",
    "TSS_CENTER_BP",
    "TSS_FLANK_BP",
    "QCThresholds",
    "cell_qc",
    "drop_recorded_cells",
    "filter_cells",
    "promoter_peaks",
    "qc_pass",
    "tss_enrichment",
]

QC_KEY = "scembed_qc"
#: Insertions within this many bp of a TSS count as its centre (101 bp window).
TSS_CENTER_BP = 50
#: The flanks: insertions between 1,900 and 2,000 bp from a TSS, both sides (200 bp).
TSS_FLANK_BP = (1900, 2000)
#: Threshold names whose metric column is named otherwise (``min_peaks`` -> ``n_peaks``).
METRIC_OF = {"peaks": "n_peaks"}


def promoter_peaks(adata: ad.AnnData, genome: str | pd.DataFrame) -> np.ndarray:
    """Mark the dataset's peaks that lie in a promoter of the gene annotation.

    Parameters
    ----------
    adata
        Cells x peaks with ``var`` ``chr``/``start``/``end`` (as the readers return).
    genome
        A build with a shipped annotation (``hg19``, ``hg38``) or an annotation table.

    Returns
    -------
    numpy.ndarray
        Boolean, one per peak: within :data:`~scembed_core.genes.PROMOTER_BP` of a TSS.
    """
    from .genes import nearest_genes
    from .project import regions_of

    return nearest_genes(regions_of(adata), genome)["location"].to_numpy() == "promoter"


def _signal_sharing_indices(matrix: Any) -> sp.csr_matrix:
    """Signal (value > 0) as 0/1 float32 over the matrix's own indices: no copy of them.

    Only the values are new (4 bytes per stored entry); entries that are not signal stay
    as explicit zeros, which sums and products ignore. A non-CSR matrix is converted once.
    """
    x = matrix if sp.issparse(matrix) and matrix.format == "csr" else sp.csr_matrix(matrix)
    if not x.has_canonical_format:  # duplicates: the value is their sum (binary_signal's rule)
        x = x.copy()
        x.sum_duplicates()
    values = np.greater(x.data, 0).astype(np.float32)
    return sp.csr_matrix((values, x.indices, x.indptr), shape=x.shape, copy=False)


#: Stored entries per block of rows in :func:`_signal_row_sums`: its 0/1 values and the
#: block's own index arrays (about 16 bytes an entry, some 17 MB a block) are made a block
#: at a time, not for the whole matrix (0.7x an uncompressed upload's size).
SIGNAL_BLOCK_NNZ = 1 << 20


def _signal_row_sums(
    matrix: Any, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per cell: peaks with signal, and the sum of ``weights`` over them (None without).

    The same sums as over :func:`_signal_sharing_indices` of the whole matrix, computed in
    blocks of rows of about :data:`SIGNAL_BLOCK_NNZ` stored entries (each row's sums do
    not depend on the others), so only one block's values are in memory at a time.
    """
    x = matrix if sp.issparse(matrix) and matrix.format == "csr" else sp.csr_matrix(matrix)
    if not x.has_canonical_format:  # duplicates: the whole-matrix rule (sums them first)
        x = _signal_sharing_indices(x)
    n_rows, nnz = x.shape[0], int(x.indptr[-1])
    step = max(1, int(n_rows * SIGNAL_BLOCK_NNZ / nnz)) if nnz else max(n_rows, 1)
    counts = np.zeros(n_rows, dtype=np.float64)
    weighted = None if weights is None else np.zeros(n_rows, dtype=np.float64)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        lo, hi = int(x.indptr[start]), int(x.indptr[stop])
        values = np.greater(x.data[lo:hi], 0).astype(np.float32)
        block = sp.csr_matrix(
            (values, x.indices[lo:hi], x.indptr[start : stop + 1] - lo),
            shape=(stop - start, x.shape[1]),
            copy=False,
        )
        counts[start:stop] = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
        if weighted is not None:
            weighted[start:stop] = np.asarray(block @ weights, dtype=np.float64).ravel()
    return counts, weighted


def cell_qc(
    adata: ad.AnnData,
    *,
    genome: str | pd.DataFrame | None = None,
    regions_in_universe: np.ndarray | None = None,
    tss: pd.Series | None = None,
) -> pd.DataFrame:
    """Compute the QC metrics of every cell (one row per cell, in ``obs`` order).

    Parameters
    ----------
    adata
        Cells x peaks as returned by :func:`scembed_core.io.read_dataset`.
    genome
        Build (or annotation table) for the promoter fraction; None or a build without an
        annotation leaves that column out.
    regions_in_universe
        Reference regions each cell covers (e.g. ``Coverage.n_regions_per_cell``).
    tss
        TSS enrichment per cell (from :func:`tss_enrichment`), matched on cell names;
        otherwise ``obs["tss_enrichment"]`` is used when present.

    Returns
    -------
    pandas.DataFrame
        ``n_peaks`` always; ``regions_in_universe``, ``promoter_fraction``, ``frip`` (when
        ``obs`` has the fragments reader's ``n_fragments`` and ``n_fragments_total``) and
        ``tss_enrichment`` when they can be computed.
    """
    from .errors import GenomeBuildError

    promoter = None
    if genome is not None:
        try:
            promoter = promoter_peaks(adata, genome).astype(np.float32)
        except GenomeBuildError:
            promoter = None
    n_peaks, in_promoter = _signal_row_sums(adata.X, promoter)
    table = pd.DataFrame({"n_peaks": n_peaks.astype(np.int64)}, index=adata.obs_names.copy())
    if regions_in_universe is not None:
        table["regions_in_universe"] = np.asarray(regions_in_universe, dtype=np.int64)
    if in_promoter is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            table["promoter_fraction"] = np.where(n_peaks > 0, in_promoter / n_peaks, 0.0)
    obs = adata.obs
    if {"n_fragments", "n_fragments_total"} <= set(obs.columns):
        total = obs["n_fragments_total"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            table["frip"] = np.where(total > 0, obs["n_fragments"].to_numpy(float) / total, 0.0)
    if tss is not None:
        table["tss_enrichment"] = tss.reindex(table.index).to_numpy(dtype=float)
    elif "tss_enrichment" in obs:
        table["tss_enrichment"] = obs["tss_enrichment"].to_numpy(dtype=float)
    return table


def _tss_index(genome: str | pd.DataFrame) -> dict[str, np.ndarray]:
    """Sorted TSS positions per canonical chromosome."""
    from .genes import load_annotation

    table = genome if isinstance(genome, pd.DataFrame) else load_annotation(genome)
    if "tss" not in table:
        tss = np.where(table["strand"] == "+", table["start"], table["end"] - 1)
        table = table.assign(tss=tss)
    keys = table["chrom"].astype(str).map(canonical_chrom).to_numpy()
    return {
        key: np.sort(table["tss"].to_numpy(np.int64)[rows])
        for key, rows in pd.Series(np.arange(len(table))).groupby(keys).indices.items()
    }


def _distance_to_tss(chrom: np.ndarray, position: np.ndarray, index: dict) -> np.ndarray:
    """Distance of each position to the nearest TSS on its chromosome (inf if none)."""
    distance = np.full(len(position), np.inf)
    keys = pd.Series(chrom).map(canonical_chrom).to_numpy()
    for key, rows in pd.Series(np.arange(len(keys))).groupby(keys).indices.items():
        tss = index.get(key)
        if tss is None or not len(tss):
            continue
        pos = position[rows]
        right = np.clip(np.searchsorted(tss, pos), 0, len(tss) - 1)
        left = np.clip(right - 1, 0, len(tss) - 1)
        distance[rows] = np.minimum(np.abs(tss[right] - pos), np.abs(tss[left] - pos))
    return distance


def tss_enrichment(
    path: str | Path,
    genome: str | pd.DataFrame,
    *,
    barcodes: pd.Index | None = None,
    chunksize: int = 1_000_000,
) -> pd.DataFrame:
    """Compute the TSS enrichment of every barcode of a fragments file, streamed in chunks.

    Each fragment gives two Tn5 insertions (its two ends). An insertion counts for the
    centre when it lies within :data:`TSS_CENTER_BP` of its nearest annotated TSS, and for
    the flank when it lies 1,900-2,000 bp from it. The enrichment is the insertion density
    in the centre (per bp of the 101-bp window) over the density in the flanks (200 bp),
    the flank count floored at one: about 1 for insertions spread evenly, 5-20 for good
    scATAC-seq cells (ENCODE's guideline for bulk ATAC: > 6).

    Parameters
    ----------
    path
        Fragments file (``chr, start, end, barcode[, count]``, optionally gzipped).
    genome
        Build with a shipped annotation, or an annotation table.
    barcodes
        Only these barcodes (default: all).
    chunksize
        Fragments per chunk.

    Returns
    -------
    pandas.DataFrame
        Indexed by barcode: ``tss_enrichment``, ``tss_insertions`` (centre count),
        ``flank_insertions`` and ``n_fragments_total``.

    Raises
    ------
    InputFormatError
        If the file is not a readable fragments file.
    """
    from .io._files import DECOMPRESS_ERRORS, is_gzip

    path = Path(path)
    index = _tss_index(genome)
    known = pd.Index([], dtype=object)
    center = np.zeros(0, np.int64)
    flank = np.zeros(0, np.int64)
    total = np.zeros(0, np.int64)
    low, high = TSS_FLANK_BP
    try:
        reader = pd.read_csv(
            path, sep="\t", header=None, comment="#", usecols=[0, 1, 2, 3],
            names=["chr", "start", "end", "barcode"], dtype={"chr": str, "barcode": str},
            chunksize=chunksize, compression="gzip" if is_gzip(path) else None,
            keep_default_na=False, na_filter=False,
        )  # fmt: skip
        for chunk in reader:
            if barcodes is not None:
                chunk = chunk[chunk["barcode"].isin(barcodes)]
            local, uniques = pd.factorize(chunk["barcode"].to_numpy(dtype=object))
            new = pd.Index(uniques).difference(known, sort=False)
            known = known.append(new)
            grow = len(known) - len(center)
            center, flank, total = (np.pad(a, (0, grow)) for a in (center, flank, total))
            codes = known.get_indexer(uniques)[local]
            start = pd.to_numeric(chunk["start"]).to_numpy(np.int64)
            end = pd.to_numeric(chunk["end"]).to_numpy(np.int64) - 1
            chrom = chunk["chr"].to_numpy()
            total += np.bincount(codes, minlength=len(known))
            both = np.concatenate([codes, codes])
            distance = _distance_to_tss(
                np.concatenate([chrom, chrom]), np.concatenate([start, end]), index
            )
            center += np.bincount(both[distance <= TSS_CENTER_BP], minlength=len(known))
            in_flank = (distance > low) & (distance <= high)
            flank += np.bincount(both[in_flank], minlength=len(known))
    except (pd.errors.ParserError, ValueError, *DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{path.name} could not be read as a fragments file for TSS enrichment ({exc})."
        ) from exc
    width_center = 2 * TSS_CENTER_BP + 1
    width_flank = 2 * (high - low)
    enrichment = (center / width_center) / (np.maximum(flank, 1) / width_flank)
    return pd.DataFrame(
        {
            "tss_enrichment": enrichment,
            "tss_insertions": center,
            "flank_insertions": flank,
            "n_fragments_total": total,
        },
        index=pd.Index(known, name="barcode"),
    )


@dataclass(frozen=True)
class QCThresholds:
    """Limits a cell must meet to be kept (None: no limit).

    Parameters
    ----------
    min_peaks, max_peaks
        Peaks with signal (too few: empty droplets; too many: likely doublets).
    min_regions_in_universe
        Reference regions covered (below it a cell's embedding rests on a few regions).
    min_promoter_fraction
        Fraction of the cell's peaks in promoters.
    min_frip
        Fraction of the cell's fragments in peaks.
    min_tss_enrichment
        TSS enrichment.
    """

    min_peaks: int | None = None
    max_peaks: int | None = None
    min_regions_in_universe: int | None = None
    min_promoter_fraction: float | None = None
    min_frip: float | None = None
    min_tss_enrichment: float | None = None

    def rules(self) -> dict[str, tuple[str, str, float]]:
        """Return the active rules: ``{name: (column, "min" | "max", limit)}``."""
        found = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            bound, column = name.split("_", 1)
            found[name] = (METRIC_OF.get(column, column), bound, float(value))
        return found

    def to_dict(self) -> dict:
        """Return the thresholds as a plain dictionary (None for no limit)."""
        return asdict(self)


def qc_pass(table: pd.DataFrame, thresholds: QCThresholds) -> pd.DataFrame:
    """Check every cell against every active rule.

    Parameters
    ----------
    table
        From :func:`cell_qc`.
    thresholds
        The limits; a rule on a metric the table lacks is refused.

    Returns
    -------
    pandas.DataFrame
        One boolean column per active rule (True: the cell meets it) and ``pass`` (all).

    Raises
    ------
    ParameterError
        If a rule names a metric the table does not have.
    """
    checks = pd.DataFrame(index=table.index)
    for name, (column, bound, limit) in thresholds.rules().items():
        if column not in table:
            raise ParameterError(
                f"QC rule {name} needs the metric {column!r}, which this dataset does not "
                f"have (available: {', '.join(table.columns)})."
            )
        values = table[column].to_numpy(dtype=float)
        ok = values >= limit if bound == "min" else values <= limit
        checks[name] = ok & np.isfinite(values)
    checks["pass"] = checks.all(axis=1) if len(checks.columns) else True
    return checks


def filter_cells(
    adata: ad.AnnData,
    table: pd.DataFrame,
    thresholds: QCThresholds,
    *,
    key_added: str = QC_KEY,
) -> ad.AnnData:
    """Keep the cells that pass; record the filtered ones and why in ``uns[key_added]``.

    Parameters
    ----------
    adata
        The dataset (not changed).
    table
        Its QC table (:func:`cell_qc`), in ``obs`` order.
    thresholds
        The limits.
    key_added
        Where the record goes in ``uns``.

    Returns
    -------
    anndata.AnnData
        A copy holding the passing cells, the QC metrics as ``obs["qc_<metric>"]`` and
        ``uns[key_added]``: the thresholds, the cell counts, and every filtered cell's name
        with the rules it failed (``filtered_cells``, ``filtered_reasons``).
    """
    if not table.index.equals(adata.obs_names):
        raise ParameterError("The QC table's cells are not the dataset's cells, in order.")
    checks = qc_pass(table, thresholds)
    keep = checks["pass"].to_numpy(dtype=bool)
    rules = [c for c in checks.columns if c != "pass"]
    failed = ~checks[rules].to_numpy(dtype=bool) if rules else np.zeros((len(keep), 0), bool)
    reasons = np.full(int((~keep).sum()), "", dtype=object)
    for j, rule in enumerate(rules):  # a loop over the few rules, not over cells
        reasons = reasons + np.where(failed[~keep, j], rule + ";", "")
    reasons = pd.Series(reasons, dtype=object).str.rstrip(";").to_numpy(dtype=object)
    result = adata[keep].copy()
    for column in table.columns:
        result.obs[f"qc_{column}"] = table[column].to_numpy()[keep]
    result.uns[key_added] = {
        "thresholds": {k: v for k, v in thresholds.to_dict().items() if v is not None},
        "n_cells": int(adata.n_obs),
        "n_kept": int(keep.sum()),
        "n_filtered": int((~keep).sum()),
        "n_failed_by_rule": {rule: int((~checks[rule]).sum()) for rule in rules},
        "filtered_cells": np.asarray(adata.obs_names[~keep], dtype=str),
        "filtered_reasons": reasons.astype(str),
    }
    return result


def drop_recorded_cells(adata: ad.AnnData, record: dict | None) -> ad.AnnData:
    """Drop the cells a QC record lists (``run.json``'s ``qc``), to re-run a filtered analysis.

    Parameters
    ----------
    adata
        The dataset as read from the original input.
    record
        ``uns["scembed_qc"]`` of :func:`filter_cells` (None: nothing to do).

    Returns
    -------
    anndata.AnnData
        ``adata`` itself when ``record`` is None, else a copy without the listed cells and
        with ``uns[QC_KEY]`` set to the record.
    """
    if record is None:
        return adata
    listed = pd.Index(np.asarray(record.get("filtered_cells", []), dtype=str))
    keep = ~adata.obs_names.isin(listed)
    result = adata[keep].copy()
    result.uns[QC_KEY] = dict(record)
    return result
