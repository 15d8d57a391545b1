"""Gene activity per cell from the query's own peaks (Signac's gene body + 2 kb upstream).

The model is Signac's ``GeneActivity`` (Stuart et al., *Nat Methods* 2021; default
``extend.upstream = 2000``, ``extend.downstream = 0``): a gene's window is its body
extended 2 kb upstream of the TSS (strand-aware). A cell's raw activity for a gene is the
number of its open peaks that overlap the window (the peaks binarised by the one rule,
:func:`scembed_core.regions.binary_signal`; Signac counts fragments, a peak matrix has only
peaks). Each cell is then normalised like Seurat's ``LogNormalize``:
``log1p(count / open peaks of the cell * scale)`` with ``scale = 10,000``.

It is one sparse product, cells x peaks times peaks x genes (the peak-window overlaps,
found by the same sorted interval search that maps peaks to a universe), so a 100k x 200k
query never densifies. Genes come from :func:`scembed_core.genes.load_annotation` of the
peaks' build (after any liftover, the reference's build).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import ParameterError
from .regions import GenomicRegions, binary_signal, map_peaks_to_universe

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["UPSTREAM_BP", "SCALE", "gene_windows", "gene_activity", "peak_gene_matrix"]

#: Signac's default extension upstream of the TSS, in bp.
UPSTREAM_BP = 2000
#: Per-cell scale factor of the log normalisation (Seurat's default).
SCALE = 10_000.0


def gene_windows(annotation: pd.DataFrame, upstream: int = UPSTREAM_BP) -> GenomicRegions:
    """Return each gene's body extended ``upstream`` bp upstream of its TSS.

    Parameters
    ----------
    annotation
        Genes with ``chrom, start, end, strand`` (as :func:`scembed_core.genes.load_annotation`).
    upstream
        Extension upstream of the TSS: before ``start`` on ``+``, after ``end`` on ``-``.

    Returns
    -------
    GenomicRegions
        One window per gene, in the annotation's order (starts clipped at 0).
    """
    plus = annotation["strand"].to_numpy() == "+"
    start = annotation["start"].to_numpy(np.int64)
    end = annotation["end"].to_numpy(np.int64)
    return GenomicRegions(
        annotation["chrom"].to_numpy(),
        np.maximum(np.where(plus, start - upstream, start), 0),
        np.where(plus, end, end + upstream),
    )


def peak_gene_matrix(
    peaks: GenomicRegions, annotation: pd.DataFrame, upstream: int = UPSTREAM_BP
) -> sp.csr_matrix:
    """Peaks x genes 0/1 matrix: a peak counts for a gene if it overlaps its window.

    Parameters
    ----------
    peaks
        The query's peaks.
    annotation
        The genes (see :func:`gene_windows`).
    upstream
        Extension upstream of the TSS.

    Returns
    -------
    scipy.sparse.csr_matrix
        float32, peaks x genes.
    """
    return map_peaks_to_universe(peaks, gene_windows(annotation, upstream)).matrix.tocsr()


def gene_activity(
    adata: ad.AnnData,
    genome: str | pd.DataFrame,
    *,
    upstream: int = UPSTREAM_BP,
    scale: float = SCALE,
    genes: list[str] | None = None,
    drop_empty: bool = False,
) -> ad.AnnData:
    """Compute the cells x genes activity matrix (Signac's model; see the module docstring).

    Parameters
    ----------
    adata
        Cells x peaks (counts or 0/1) with peak coordinates.
    genome
        Build of the peaks (``hg19``/``hg38``) or an annotation table.
    upstream
        Extension upstream of the TSS (Signac: 2,000 bp).
    scale
        Per-cell scale factor of the log normalisation.
    genes
        Only these symbols (default: every annotated gene).
    drop_empty
        Leave out genes whose window holds no peak.

    Returns
    -------
    anndata.AnnData
        Cells x genes: ``X`` the normalised activity (sparse float32), ``layers["counts"]``
        the open peaks per window, ``var`` indexed by symbol with ``symbol``, ``gene_id``,
        ``chrom``, ``start``, ``end``, ``strand`` and ``n_peaks``; ``obs`` is the query's;
        ``obsm`` keeps the query's maps (``X_scembed_umap`` ...) so scanpy can plot genes
        on them; ``uns["scembed"]["gene_activity"]["params"]`` records the model.

    Raises
    ------
    ParameterError
        If a requested gene is not in the annotation.
    """
    import anndata as ad

    from .genes import load_annotation
    from .markers import regions_of

    annotation = genome if isinstance(genome, pd.DataFrame) else load_annotation(genome)
    if genes is not None:
        missing = [g for g in genes if g not in set(annotation["symbol"])]
        if missing:
            raise ParameterError(f"Not in the gene annotation: {', '.join(missing[:5])}.")
        annotation = annotation.set_index("symbol", drop=False).loc[list(genes)]
    overlap = peak_gene_matrix(regions_of(adata), annotation, upstream)
    n_peaks = np.asarray(overlap.sum(axis=0)).ravel().astype(np.int64)
    if drop_empty:
        keep = np.flatnonzero(n_peaks > 0)
        overlap, n_peaks, annotation = overlap[:, keep], n_peaks[keep], annotation.iloc[keep]
    signal = binary_signal(adata.X)
    counts = (signal @ overlap).tocsr().astype(np.float32)
    per_cell = np.asarray(signal.sum(axis=1)).ravel()
    factor = np.divide(scale, per_cell, out=np.zeros_like(per_cell, dtype=np.float64),
                       where=per_cell > 0)  # fmt: skip
    normalised = sp.diags(factor.astype(np.float32)) @ counts
    normalised.data = np.log1p(normalised.data)
    var = pd.DataFrame(
        {
            "symbol": annotation["symbol"].astype(str).to_numpy(),
            "gene_id": annotation["gene_id"].astype(str).to_numpy()
            if "gene_id" in annotation
            else annotation["symbol"].astype(str).to_numpy(),
            "chrom": annotation["chrom"].astype(str).to_numpy(),
            "start": annotation["start"].to_numpy(np.int64),
            "end": annotation["end"].to_numpy(np.int64),
            "strand": annotation["strand"].astype(str).to_numpy(),
            "n_peaks": n_peaks,
        },
        index=pd.Index(annotation["symbol"].astype(str).to_numpy()),
    )
    out = ad.AnnData(
        X=sp.csr_matrix(normalised, dtype=np.float32),
        obs=adata.obs.copy(),
        var=var,
        obsm={k: np.asarray(v) for k, v in adata.obsm.items() if k.startswith("X_")},
        layers={"counts": counts},
    )
    out.uns["scembed"] = {
        "gene_activity": {
            "params": {
                "model": "Signac GeneActivity: gene body + upstream, open peaks per window",
                "genome": genome if isinstance(genome, str) else "custom",
                "upstream": int(upstream),
                "normalisation": "log1p(count / open peaks of the cell * scale)",
                "scale": float(scale),
            }
        }
    }
    return out
