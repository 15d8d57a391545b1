"""Build the files the Export page offers (no Streamlit import, tested directly)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from scembed_core.labeling import probability_columns
from scembed_core.pipeline import probability_csv_name

PROBABILITY_CSV_PREFIX = "scembed_prob_"
__all__ = ["per_cell_table", "annotated_h5ad_bytes", "csv_bytes", "figure_html"]


def per_cell_table(
    obs_names: pd.Index,
    projection: Any,
    clusters: pd.Series,
    transferred: pd.DataFrame | None,
) -> pd.DataFrame:
    """One row per query cell: cluster, label, confidence, class probabilities, distance, map.

    Class probabilities are one ``scembed_prob_<class>`` column per reference class.

    Column names are those of ``python -m scembed_core project`` (see
    :func:`scembed_core.pipeline.annotated_adata`), so files from the app and the command
    line read the same way.
    """
    table = pd.DataFrame(index=pd.Index(obs_names, name="cell"))
    table["scembed_cluster"] = clusters.to_numpy()
    if transferred is not None:
        table["scembed_label"] = transferred["label"].to_numpy()
        table["scembed_predicted"] = transferred["predicted"].to_numpy()
        table["scembed_label_confidence"] = transferred["confidence"].to_numpy(dtype=float)
        for column in probability_columns(transferred):
            table[probability_csv_name(column)] = transferred[column].to_numpy(dtype=float)
    if projection.mapping_distance is not None:
        table["scembed_mapping_distance"] = np.asarray(projection.mapping_distance, dtype=float)
    table["scembed_n_regions"] = np.asarray(projection.coverage.n_regions_per_cell)
    if projection.umap is not None:
        coords = np.asarray(projection.umap, dtype=float)
        table["scembed_umap_1"] = coords[:, 0]
        table["scembed_umap_2"] = coords[:, 1]
    return table


def annotated_h5ad_bytes(
    adata: ad.AnnData, table: pd.DataFrame, projection: Any, *, params: dict
) -> bytes:
    """The query AnnData with the per-cell results in ``obs``/``obsm`` and ``uns['scembed']``."""
    out = adata.copy()
    probability = [c for c in table.columns if c.startswith(PROBABILITY_CSV_PREFIX)]
    for column in table.columns:
        if column.startswith("scembed_umap") or column in probability:
            continue
        values = table[column].to_numpy()
        out.obs[column] = pd.Categorical(values) if values.dtype == object else values
    out.obsm["X_scembed"] = np.asarray(projection.embedding, dtype=np.float32)
    if projection.analysis is not None:
        out.obsm["X_scembed_whitened"] = np.asarray(projection.analysis, dtype=np.float32)
    if projection.umap is not None:
        out.obsm["X_scembed_umap"] = np.asarray(projection.umap, dtype=np.float32)
    out.uns["scembed"] = {k: ("" if v is None else v) for k, v in params.items()}
    read = adata.uns.get("scembed_read")
    lift = adata.uns.get("scembed_liftover") or (read.get("liftover") if read else None)
    if lift:  # the peaks (or fragments) were lifted onto the reference's build
        out.uns["scembed"]["liftover"] = dict(lift)
        out.uns.pop("scembed_liftover", None)
    if probability:
        out.obsm["scembed_label_probabilities"] = table[probability].to_numpy(np.float32)
        out.uns["scembed"]["label_classes"] = [
            c.removeprefix(PROBABILITY_CSV_PREFIX) for c in probability
        ]
    with tempfile.TemporaryDirectory(prefix="scembed-export-") as tmp:
        path = Path(tmp) / "annotated.h5ad"
        out.write_h5ad(path, compression="gzip")
        return path.read_bytes()


def csv_bytes(frame: pd.DataFrame, *, index: bool = True) -> bytes:
    """UTF-8 CSV."""
    return frame.to_csv(index=index).encode("utf-8")


def figure_html(fig: go.Figure) -> bytes:
    """A self-contained HTML file (plotly.js embedded: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
