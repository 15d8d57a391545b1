"""Test helper: write one AnnData in every upload format :func:`read_dataset` accepts.

Not part of the engine; the tests use it to round-trip real data through each reader.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

__all__ = ["write_dataset_formats", "write_fragments", "write_mtx_folder", "write_10x_h5"]

#: Fragments of this barcode overlap no peak, so ``min_fragments=1`` drops it.
GHOST_BARCODE = "GHOST-1"
#: A contig absent from any universe built from the peaks.
UNKNOWN_CONTIG = "chrUn_test"


def _counts_and_coords(adata: ad.AnnData) -> tuple[sp.csr_matrix, pd.DataFrame, np.ndarray]:
    counts = sp.csr_matrix(adata.X).astype(np.int32)
    coords = pd.DataFrame(
        {
            "chr": adata.var["chr"].astype(str).to_numpy(),
            "start": adata.var["start"].to_numpy(np.int64),
            "end": adata.var["end"].to_numpy(np.int64),
        }
    )
    names = (
        coords["chr"] + "_" + coords["start"].astype(str) + "_" + coords["end"].astype(str)
    ).to_numpy()
    return counts, coords, names


def _write_gz_text(path: Path, text: str) -> None:
    with gzip.open(path, "wt") as handle:
        handle.write(text)


def write_mtx_folder(adata: ad.AnnData, folder: Path) -> Path:
    """10x layout: ``matrix.mtx.gz`` (peaks x cells), ``barcodes.tsv.gz``, ``peaks.bed.gz``."""
    counts, coords, _ = _counts_and_coords(adata)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, counts.T.tocoo(), field="integer")
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        handle.write(buffer.getvalue())
    _write_gz_text(folder / "barcodes.tsv.gz", "".join(f"{b}\n" for b in adata.obs_names))
    _write_gz_text(folder / "peaks.bed.gz", coords.to_csv(sep="\t", header=False, index=False))
    return folder


def write_10x_h5(adata: ad.AnnData, path: Path) -> Path:
    """A cellranger-atac ``filtered_peak_bc_matrix.h5`` (CSC features x barcodes)."""
    counts, coords, _ = _counts_and_coords(adata)
    ids = (
        coords["chr"] + ":" + coords["start"].astype(str) + "-" + coords["end"].astype(str)
    ).to_numpy()
    with h5py.File(path, "w") as handle:
        grp = handle.create_group("matrix")
        grp["barcodes"] = np.array(adata.obs_names, dtype="S")
        # CSR of cells x peaks is CSC of peaks x cells: the same three arrays.
        grp["data"] = counts.data
        grp["indices"] = counts.indices.astype(np.int64)
        grp["indptr"] = counts.indptr.astype(np.int64)
        grp["shape"] = np.array([counts.shape[1], counts.shape[0]], dtype=np.int32)
        feat = grp.create_group("features")
        feat["id"] = np.array(ids, dtype="S")
        feat["name"] = np.array(ids, dtype="S")
        feat["feature_type"] = np.array([b"Peaks"] * len(ids))
        feat["genome"] = np.array([b"hg19"] * len(ids))
    return path


def write_table(adata: ad.AnnData, path: Path, sep: str = ",", label: str | None = None) -> Path:
    """The paper's layout: cells as rows, first column the names, region columns; gz by name."""
    counts, _, names = _counts_and_coords(adata)
    frame = pd.DataFrame(counts.toarray(), index=adata.obs_names, columns=names)
    if label is not None:
        frame[label] = adata.obs[label].astype(str).to_numpy()
    frame.to_csv(path, sep=sep)
    return path


def write_fragments(adata: ad.AnnData, path: Path, *, chrom_prefix: str = "") -> Path:
    """One fragment per non-zero count, inside its peak, plus off-target fragments.

    The extra rows are a barcode whose fragments overlap nothing (:data:`GHOST_BARCODE`)
    and fragments on a contig absent from the peaks (:data:`UNKNOWN_CONTIG`).
    """
    counts, coords, _ = _counts_and_coords(adata)
    coo = counts.tocoo()
    start = coords["start"].to_numpy()[coo.col] + 10
    end = np.minimum(start + 50, coords["end"].to_numpy()[coo.col])
    frame = pd.DataFrame(
        {
            "chr": chrom_prefix + coords["chr"].to_numpy()[coo.col],
            "start": start,
            "end": end,
            "barcode": np.asarray(adata.obs_names)[coo.row],
            "count": coo.data,
        }
    )
    extra = pd.DataFrame(
        {
            "chr": [chrom_prefix + "chr1", chrom_prefix + "chr1", UNKNOWN_CONTIG],
            "start": [0, 5, 100],
            "end": [3, 8, 200],
            "barcode": [GHOST_BARCODE, GHOST_BARCODE, str(adata.obs_names[0])],
            "count": [1, 2, 1],
        }
    )
    frame = pd.concat([frame, extra]).sort_values(["chr", "start"], kind="stable")
    text = "# id=test\n# reference_path=none\n" + frame.to_csv(sep="\t", header=False, index=False)
    _write_gz_text(path, text)
    return path


def _zip_folder(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, arcname=str(Path(folder.name) / file.relative_to(folder)))
    return path


def _tar_path(source: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.add(source, arcname=source.name)
    return path


def write_dataset_formats(adata: ad.AnnData, folder: str | Path) -> dict[str, Path]:
    """Write ``adata`` (counts in ``X``; ``var`` chr/start/end) in every supported format.

    Returns
    -------
    dict
        Format key -> path: ``h5ad``, ``h5ad_counts_layer`` (no ``X``, counts in a layer),
        ``10x_h5``, ``mtx_dir``, ``csv`` (with a ``cell_type`` label column if present),
        ``csv_gz``, ``tsv``, ``fragments`` (needs the peaks as universe), ``zip`` and
        ``tar_gz`` (the 10x folder) and ``tgz_h5ad``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    label = "cell_type" if "cell_type" in adata.obs else None
    out: dict[str, Path] = {}
    out["h5ad"] = folder / "data.h5ad"
    adata.write_h5ad(out["h5ad"])
    layered = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy())
    layered.layers["counts"] = sp.csr_matrix(adata.X)
    out["h5ad_counts_layer"] = folder / "layered.h5ad"
    layered.write_h5ad(out["h5ad_counts_layer"])
    out["10x_h5"] = write_10x_h5(adata, folder / "filtered_peak_bc_matrix.h5")
    out["mtx_dir"] = write_mtx_folder(adata, folder / "filtered_peak_bc_matrix")
    out["csv"] = write_table(adata, folder / "cells.csv", label=label)
    out["csv_gz"] = write_table(adata, folder / "cells.csv.gz")
    out["tsv"] = write_table(adata, folder / "cells.tsv", sep="\t", label=label)
    out["fragments"] = write_fragments(adata, folder / "fragments.tsv.gz")
    out["zip"] = _zip_folder(out["mtx_dir"], folder / "matrix.zip")
    out["tar_gz"] = _tar_path(out["mtx_dir"], folder / "matrix.tar.gz")
    out["tgz_h5ad"] = _tar_path(out["h5ad"], folder / "data.tgz")
    return out
