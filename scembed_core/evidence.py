"""Biological evidence verbs (re-exported by :mod:`scembed_core.tl`).

``rank_regions``
    Marker regions per group on the query's own peaks (:mod:`scembed_core.markers`):
    scanpy's ``rank_genes_groups`` result under ``uns[key_added]`` (default
    ``"rank_genes_groups"``, so ``scanpy.get.rank_genes_groups_df(adata, group)`` reads
    it) and the marker table with nearest genes in ``uns["scembed"]["markers"]`` (for
    another ``key_added``: ``uns["scembed"]["markers_<key_added>"]``).
``gene_activity``
    A cells x genes AnnData of gene activity scores (:mod:`scembed_core.gene_activity`).
``second_opinion``
    Each cluster's best-matching reference type by accessibility profile, added to the
    cluster table (:mod:`scembed_core.labels.second_opinion`).

Parameters are recorded in ``uns["scembed"][<verb>]["params"]`` like the other verbs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from . import results
from .errors import ParameterError

if TYPE_CHECKING:
    import anndata as ad

    from .reference import Reference

__all__ = ["rank_regions", "gene_activity", "second_opinion", "query_genome_of"]


def query_genome_of(adata: ad.AnnData) -> str | None:
    """Build of the query's peaks as recorded by :func:`scembed_core.tl.project`.

    Parameters
    ----------
    adata
        A query, projected or not.

    Returns
    -------
    str or None
        The reference's build (the peaks are on it after any liftover), else None.
    """
    params = adata.uns.get("scembed", {}).get("project", {}).get("params", {})
    genome = params.get("reference_genome") or params.get("query_genome")
    return None if genome in (None, "unknown") else str(genome)


def rank_regions(
    adata: ad.AnnData,
    groupby: str = results.CLUSTER,
    *,
    genome: str | None = None,
    n_top: int = 50,
    n_genes: int = 200,
    tie_correct: bool = False,
    min_cells: int = 3,
    key_added: str = "rank_genes_groups",
    copy: bool = False,
) -> ad.AnnData | None:
    """Rank each group's marker regions (Wilcoxon on the binarised peaks, one vs rest).

    Parameters
    ----------
    adata
        Cells x peaks with peak coordinates (``var`` ``chr/start/end`` or region names).
    groupby
        ``obs`` column of the groups: clusters (default) or transferred labels
        (``"scembed_label"``).
    genome
        Build of the peaks for the nearest genes (default: the projection's reference
        build; None and unprojected: no gene columns).
    n_top
        Regions per group in the marker table.
    n_genes
        Regions per group in scanpy's result (``uns[key_added]``).
    tie_correct
        Tie-corrected Wilcoxon variance (scanpy's ``tie_correct``).
    min_cells
        Groups with fewer cells are not ranked.
    key_added
        ``uns`` key of scanpy's result.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None (``adata`` is updated in place).

    Raises
    ------
    ParameterError
        If ``groupby`` is not an ``obs`` column or no group has ``min_cells`` cells.
    """
    from .markers import rank_regions_table, regions_of, scanpy_result

    if groupby not in adata.obs:
        raise ParameterError(f"obs has no {groupby!r} column to group the cells by.")
    out = adata.copy() if copy else adata
    genome = genome if genome is not None else query_genome_of(out)
    table, full = rank_regions_table(
        out.X,
        out.obs[groupby].to_numpy(),
        regions_of(out),
        genome=genome,
        n_top=n_top,
        tie_correct=tie_correct,
        min_cells=min_cells,
    )
    params = {
        "groupby": groupby, "genome": genome if isinstance(genome, str) else "custom", "n_top": int(n_top), "n_genes": int(n_genes),
        "tie_correct": bool(tie_correct), "min_cells": int(min_cells), "uns_key": key_added,
        "method": "wilcoxon", "binarised": True,
    }  # fmt: skip
    out.uns[key_added] = scanpy_result(
        full, groupby=groupby, n_genes=int(min(n_genes, out.n_vars)), params={"pts": True}
    )
    results.record(out, "rank_regions", params)
    name = "markers" if key_added == "rank_genes_groups" else f"markers_{key_added}"
    out.uns["scembed"][name] = table.astype({"group": str})
    return out if copy else None


def gene_activity(
    adata: ad.AnnData,
    genome: str | pd.DataFrame | None = None,
    *,
    upstream: int = 2_000,
    scale: float = 10_000.0,
    genes: list[str] | None = None,
    drop_empty: bool = False,
) -> ad.AnnData:
    """Gene activity per cell; see :func:`scembed_core.gene_activity.gene_activity`.

    Parameters
    ----------
    adata
        Cells x peaks with peak coordinates.
    genome
        Build of the peaks (default: the projection's reference build) or an annotation.
    upstream
        Extension of each gene's window upstream of its TSS (Signac: 2,000 bp).
    scale
        Per-cell scale factor of the log normalisation.
    genes
        Only these symbols (default: every annotated gene).
    drop_empty
        Leave out genes whose window holds no peak.

    Returns
    -------
    anndata.AnnData
        Cells x genes, ``var["symbol"]`` and ``var["gene_id"]``.
    """
    from .gene_activity import gene_activity as _gene_activity

    genome = genome if genome is not None else query_genome_of(adata)
    if genome is None:
        raise ParameterError("Say the genome build of the peaks (genome='hg19' or 'hg38').")
    return _gene_activity(
        adata, genome, upstream=upstream, scale=scale, genes=genes, drop_empty=drop_empty
    )


def second_opinion(
    adata: ad.AnnData,
    reference: Reference,
    *,
    cluster_key: str = results.CLUSTER,
    label_key: str = results.LABEL,
    copy: bool = False,
) -> ad.AnnData | None:
    """Add each cluster's best-matching reference type by accessibility to the cluster table.

    Parameters
    ----------
    adata
        A query with clusters, labels and the cluster table
        (:func:`scembed_core.tl.annotate_clusters`), peaks as read.
    reference
        The reference it was projected onto.
    cluster_key, label_key
        The ``obs`` columns of the clusters and the transferred labels.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy`` is True, else None. The cluster table
        (``uns["scembed"]["<cluster_key>_label"]["cluster_table"]``) gains ``second_opinion``,
        ``second_opinion_score`` and ``markers_agree``; the per-type scores are in
        ``uns["scembed"]["second_opinion"]``.
    """
    from .labels.second_opinion import cluster_second_opinion

    out = adata.copy() if copy else adata
    cluster_second_opinion(out, reference, cluster_key=cluster_key, label_key=label_key)
    return out if copy else None
