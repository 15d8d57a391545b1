"""Marker regions per group (cluster or label) on the query's own peaks, with nearest genes.

The test is scanpy's ``rank_genes_groups(method="wilcoxon")`` (one group against the rest,
average ranks for ties, Benjamini-Hochberg per group) on the binarised matrix
(:func:`scembed_core.regions.binary_signal`). On 0/1 data every rank is one of two tied
values, so the rank sum of a group has a closed form in its count of open cells: the
statistic is computed for all regions and groups from one sparse product (groups x
regions counts), never densifying the cells x regions matrix. ``tests/core/test_markers.py``
checks it equals scanpy's scores, p-values and adjusted p-values.

The log fold change is ``log2((fraction open in group + eps) / (fraction open in the rest +
eps))`` with ``eps = 1e-9`` like scanpy's; scanpy's own ``logfoldchanges`` assume
log-normalised expression and are meaningless on 0/1 data, so this one replaces them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtr

from .errors import ParameterError
from .regions import GenomicRegions, binary_signal

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["MARKER_COLUMNS", "rank_regions_table", "scanpy_result", "benjamini_hochberg"]

#: Columns of the marker table (``uns["scembed"]["markers"]``).
MARKER_COLUMNS = [
    "group", "rank", "region", "chrom", "start", "end", "score", "logfoldchange",
    "pct_in", "pct_out", "pval", "pval_adj", "gene", "gene_id", "tss_distance", "location",
]  # fmt: skip
_EPS = 1e-9


def benjamini_hochberg(pvals: np.ndarray) -> np.ndarray:
    """Adjust p-values by Benjamini-Hochberg along the last axis (as scanpy does).

    Parameters
    ----------
    pvals
        p-values, one row per test family.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, same shape, capped at 1.
    """
    p = np.atleast_2d(pvals)
    n = p.shape[1]
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * n / np.arange(1, n + 1)
    ranked = np.minimum.accumulate(ranked[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(ranked)
    np.put_along_axis(out, order, np.minimum(ranked, 1.0), axis=1)
    return out.reshape(np.shape(pvals))


def _group_counts(signal: sp.csr_matrix, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Open cells per group and region (groups x regions), from one sparse product."""
    valid = codes >= 0
    onehot = sp.csr_matrix(
        (np.ones(int(valid.sum()), dtype=np.float32), (codes[valid], np.flatnonzero(valid))),
        shape=(n_groups, signal.shape[0]),
    )
    return np.asarray((onehot @ signal).todense(), dtype=np.float64)


def _wilcoxon(
    open_in: np.ndarray, n_in: np.ndarray, open_total: np.ndarray, n_total: int, tie_correct: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Compute scanpy's Wilcoxon z-scores and two-sided p-values on 0/1 data, in closed form."""
    zeros = n_total - open_total  # cells closed at the region, over every group
    mean_rank_zero = (zeros + 1) / 2.0
    mean_rank_one = zeros + (open_total + 1) / 2.0
    n1 = n_in[:, None]
    rank_sum = (n1 - open_in) * mean_rank_zero + open_in * mean_rank_one
    expected = n1 * (n_total + 1) / 2.0
    var = n1 * (n_total - n1) * (n_total + 1) / 12.0
    if tie_correct:
        ties = (zeros**3 - zeros) + (open_total**3 - open_total)
        var = var * (1.0 - ties / float(n_total**3 - n_total))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (rank_sum - expected) / np.sqrt(var)
    z = np.nan_to_num(z, nan=0.0)  # scanpy: a region closed (or open) everywhere scores 0
    pvals = 2.0 * ndtr(-np.abs(z))
    return z, pvals


def rank_regions_table(
    matrix: sp.spmatrix | np.ndarray,
    groups: pd.Series | np.ndarray,
    regions: GenomicRegions,
    *,
    genome: str | pd.DataFrame | None = None,
    n_top: int = 50,
    tie_correct: bool = False,
    min_cells: int = 1,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Rank the regions of every group against the rest of the cells.

    Parameters
    ----------
    matrix
        Cells x regions counts (binarised here).
    groups
        Group of each cell (cluster or label); missing values and groups with fewer
        than ``min_cells`` cells are left out of the ranking (but count as "rest").
    regions
        Coordinates of the matrix's regions.
    genome
        Build of the regions (``hg19``/``hg38``) or an annotation table, for the
        nearest-gene columns; None leaves them empty.
    n_top
        Regions kept per group in the marker table, best score first.
    tie_correct
        Apply the tie correction to the Wilcoxon variance (scanpy's ``tie_correct``).
    min_cells
        Smallest group ranked.

    Returns
    -------
    table
        The marker table (columns :data:`MARKER_COLUMNS`), ``n_top`` rows per group.
    full
        Per statistic (``scores``, ``pvals``, ``pvals_adj``, ``logfoldchanges``, ``pts``,
        ``pts_rest``) a groups x regions frame, for the scanpy-compatible result.
    """
    signal = binary_signal(matrix)
    labels = pd.Series(np.asarray(groups, dtype=object)).astype("category")
    sizes = labels.value_counts(sort=False)
    names = [str(g) for g in labels.cat.categories if sizes[g] >= min_cells]
    if not names:
        raise ParameterError("No group has enough cells to rank marker regions.")
    lookup = {g: i for i, g in enumerate(names)}
    codes = labels.astype(str).map(lookup).fillna(-1).astype(np.int64).to_numpy()
    codes[labels.isna().to_numpy()] = -1
    n_total = signal.shape[0]
    open_in = _group_counts(signal, codes, len(names))
    open_total = np.asarray(signal.sum(axis=0), dtype=np.float64).ravel()
    n_in = np.bincount(codes[codes >= 0], minlength=len(names)).astype(np.float64)
    z, pvals = _wilcoxon(open_in, n_in, open_total, n_total, tie_correct)
    n_rest = n_total - n_in[:, None]
    pts = open_in / n_in[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        pts_rest = np.where(n_rest > 0, (open_total - open_in) / n_rest, 0.0)
    lfc = np.log2((pts + _EPS) / (pts_rest + _EPS))
    full = {
        key: pd.DataFrame(value, index=names, columns=regions.names)
        for key, value in {
            "scores": z, "pvals": pvals, "pvals_adj": benjamini_hochberg(pvals),
            "logfoldchanges": lfc, "pts": pts, "pts_rest": pts_rest,
        }.items()
    }  # fmt: skip
    top = np.argsort(-z, axis=1, kind="stable")[:, : min(n_top, z.shape[1])]
    rows = np.repeat(np.arange(len(names)), top.shape[1])
    cols = top.ravel()
    table = pd.DataFrame(
        {
            "group": pd.Categorical(np.asarray(names, dtype=object)[rows], categories=names),
            "rank": np.tile(np.arange(1, top.shape[1] + 1), len(names)),
            "region": regions.names[cols],
            "chrom": regions.chrom[cols],
            "start": regions.start[cols],
            "end": regions.end[cols],
            "score": z[rows, cols],
            "logfoldchange": lfc[rows, cols],
            "pct_in": pts[rows, cols],
            "pct_out": pts_rest[rows, cols],
            "pval": pvals[rows, cols],
            "pval_adj": full["pvals_adj"].to_numpy()[rows, cols],
        }
    )
    table = pd.concat([table, _gene_columns(regions, cols, genome)], axis=1)
    return table[MARKER_COLUMNS], full


def _gene_columns(
    regions: GenomicRegions, cols: np.ndarray, genome: str | pd.DataFrame | None
) -> pd.DataFrame:
    from .genes import GENOMES, nearest_genes
    from .liftover.builds import normalize_build

    n = len(cols)
    known = isinstance(genome, pd.DataFrame) or normalize_build(genome) in GENOMES
    if genome is None or not known:
        return pd.DataFrame(
            {
                "gene": [""] * n,
                "gene_id": [""] * n,
                "tss_distance": np.full(n, np.nan),
                "location": ["unannotated"] * n,
            }  # fmt: skip
        )
    unique, inverse = np.unique(cols, return_inverse=True)
    sub = GenomicRegions(regions.chrom[unique], regions.start[unique], regions.end[unique])
    near = nearest_genes(sub, genome).iloc[inverse].reset_index(drop=True)
    return near[["gene", "gene_id", "tss_distance", "location"]]


def scanpy_result(
    full: dict[str, pd.DataFrame], *, groupby: str, n_genes: int, params: dict
) -> dict:
    """Build the ``rank_genes_groups`` result dict scanpy writes, from :func:`rank_regions_table`.

    Parameters
    ----------
    full
        The per-statistic frames of :func:`rank_regions_table`.
    groupby
        The ``obs`` column ranked.
    n_genes
        Regions kept per group (best score first), as scanpy's ``n_genes``.
    params
        Extra entries for ``params``.

    Returns
    -------
    dict
        ``params``, ``names``, ``scores``, ``pvals``, ``pvals_adj``, ``logfoldchanges``
        (structured arrays, one field per group) and ``pts``/``pts_rest`` (regions x
        groups frames), so ``scanpy.get.rank_genes_groups_df`` and
        ``scanpy.pl.rank_genes_groups`` read it.
    """
    scores = full["scores"]
    groups = list(scores.index)
    order = np.argsort(-scores.to_numpy(), axis=1, kind="stable")[:, :n_genes]
    names = scores.columns.to_numpy()

    def rec(values: np.ndarray, dtype: str) -> np.ndarray:
        return np.rec.fromarrays([v.astype(dtype) for v in values], names=[str(g) for g in groups])

    result: dict = {
        "params": {
            "groupby": groupby,
            "reference": "rest",
            "method": "wilcoxon",
            "use_raw": False,
            "layer": None,
            "corr_method": "benjamini-hochberg",
            **params,
        },  # fmt: skip
        "names": rec(names[order], "O"),
    }
    for key in ("scores", "pvals", "pvals_adj", "logfoldchanges"):
        values = np.take_along_axis(full[key].to_numpy(), order, axis=1)
        result[key] = rec(values, "float32" if key in ("scores", "logfoldchanges") else "float64")
    result["pts"] = full["pts"].T.astype(np.float32)
    result["pts_rest"] = full["pts_rest"].T.astype(np.float32)
    return result


def regions_of(adata: ad.AnnData) -> GenomicRegions:
    """Return the query's peaks (``var`` columns ``chr/start/end``, else its names).

    Parameters
    ----------
    adata
        Cells x peaks.

    Returns
    -------
    GenomicRegions
        One region per ``var`` row.
    """
    from .project import regions_of as _regions_of

    return _regions_of(adata)
