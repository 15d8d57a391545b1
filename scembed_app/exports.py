"""Build the files the Export page offers (no Streamlit import, tested directly).

The annotated dataset is written by the engine's one writer
(:mod:`scembed_core.results`), the one ``python -m scembed_core project`` and
``se.tl`` use: the same ``obs`` columns, ``obsm`` keys and ``uns["scembed"]`` layout.
"""

from __future__ import annotations

import json
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from scembed_core import results

PROBABILITY_CSV_PREFIX = "scembed_prob_"
__all__ = [
    "annotated_adata",
    "cluster_table",
    "per_cell_table",
    "annotated_h5ad_bytes",
    "csv_bytes",
    "figure_html",
    "figure_bundle_html",
]


def annotated_adata(
    adata: ad.AnnData,
    reference: Any,
    projection: Any,
    clusters: np.ndarray,
    labels: pd.DataFrame | None,
    *,
    resolution: float,
    n_neighbors: int = 15,
    seed: int = 0,
    label_key: str | None = None,
    label_method: str = "classifier",
    k: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    unknown_rate: float | None = None,
    detection: Any = None,
    graph: ad.AnnData | None = None,
    counts: bool = True,
) -> ad.AnnData:
    """Write the query with this session's results under the engine's keys.

    The stages' results come from the app's cache (computed by the ``se.tl`` verbs or
    the one label rule); they are written by the engine's writer
    (:mod:`scembed_core.results`) with the parameters the verbs record, and the cluster
    table is ``se.tl.annotate_clusters`` itself, so the file reads as the command line's.

    Parameters
    ----------
    adata
        The query the projection was made from.
    reference, projection
        The reference and the (cached) :class:`~scembed_core.project.Projection`.
    clusters
        Cluster number of each cell (-1: no embedding).
    labels
        :func:`~scembed_core.labels.assign.assign_labels` output, or None without labels.
    resolution, n_neighbors, seed
        The clustering's settings.
    label_key, label_method, k, min_confidence, max_mapping_distance, unknown_rate
        The label transfer's settings (``label_method`` as asked for; ``unknown_rate``
        the Unknown rule's strictness, None for the reference's calibrated rule).
    detection
        The build detection of the uploaded peaks
        (:func:`scembed_core.liftover.detect_build`), recorded as the command line does.
    graph
        The cached ``se.tl.neighbors`` result the clusters were computed on (its
        ``obsp``/``uns["neighbors"]`` are copied); None: computed here.
    counts
        Keep the count matrix (the downloaded file); without it only ``obs``, ``var``,
        ``obsm`` and ``uns`` are built, which is all the tables need.
    """
    from scembed_core import tl
    from scembed_core.labels.assign import resolve_label_method

    if counts:
        out = adata.copy()
    else:
        out = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy(), uns=dict(adata.uns))
    read = adata.uns.get("scembed_read")
    lift = adata.uns.get("scembed_liftover") or (read.get("liftover") if read else None)
    query_genome = None
    if detection is not None:  # the command line's rule (liftover.query.decide_lift)
        query_genome = detection.build if detection.confident else "unknown"
    results.write_projection(out, projection, reference, n_neighbors=k, query_genome=query_genome)
    if graph is None:
        tl.neighbors(out, n_neighbors, random_state=seed)
    else:
        entry = graph.uns["neighbors"]
        for name in (entry["distances_key"], entry["connectivities_key"]):
            out.obsp[name] = graph.obsp[name]
        out.uns["neighbors"] = {**entry, "params": dict(entry["params"])}
    params = results.cluster_params(
        method="louvain",
        resolution=resolution,
        n_clusters_requested=None,
        n_neighbors=n_neighbors,
        random_state=seed,
    )
    results.write_clusters(out, np.asarray(clusters), params)
    if labels is not None:
        label_key = label_key or reference.default_label_key
        used, note = resolve_label_method(reference, label_method, label_key)
        params = results.label_params(
            method=used,
            method_requested=label_method,
            note=note,
            label_key=label_key,
            n_neighbors=k,
            min_confidence=min_confidence,
            max_mapping_distance=max_mapping_distance,
        )
        params["unknown_rate"] = None if unknown_rate is None else float(unknown_rate)
        results.write_labels(out, labels.set_axis(out.obs_names), params)
        tl.annotate_clusters(out, reference)
        # the second opinion, as `scembed project` adds it (pipeline.write_evidence); it reads
        # the peaks, which a table-only build leaves out
        full = out if counts else ad.AnnData(X=adata.X, obs=out.obs, var=adata.var, uns=out.uns)
        tl.second_opinion(full, reference)
        out.uns["scembed"] = full.uns["scembed"]
    summary = detection.summary() if detection is not None else None
    from scembed_core.fit import assess_fit, with_unknown

    fit = assess_fit(
        adata,
        reference,
        detection=detection,
        detect=False,
        lifted_from=(lift or {}).get("source_build"),
    )
    if labels is not None and "unknown" in labels:
        mapped = labels["label"].to_numpy() != results.UNASSIGNED
        fit = with_unknown(
            fit, float(labels["unknown"].to_numpy()[mapped].mean()) if mapped.any() else 0.0
        )
    results.write_run_facts(out, liftover=lift, build_detection=summary, fit=fit)
    return out


def cluster_table(annotated: ad.AnnData) -> pd.DataFrame | None:
    """Return the cluster table ``se.tl.annotate_clusters`` stored (None without labels)."""
    return results.cluster_table_of(annotated)


def per_cell_table(annotated: ad.AnnData) -> pd.DataFrame:
    """One row per query cell (:func:`scembed_core.results.cell_table`, the CLI's CSV).

    Every ``scembed_*`` column of ``obs``, one ``scembed_prob_<class>`` column per
    reference class, and ``umap_1``/``umap_2`` on the reference map.
    """
    return results.cell_table(annotated)


def annotated_h5ad_bytes(annotated: ad.AnnData) -> bytes:
    """Return the annotated ``.h5ad`` as bytes (:func:`scembed_core.results.write_h5ad`)."""
    return results.h5ad_bytes(annotated)


def csv_bytes(frame: pd.DataFrame, *, index: bool = True) -> bytes:
    """UTF-8 CSV."""
    return frame.to_csv(index=index).encode("utf-8")


def figure_html(fig: go.Figure) -> bytes:
    """Return a self-contained HTML file (plotly.js embedded: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")


_BUNDLE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
section { margin: 32px 0; border-top: 1px solid #ddd; padding-top: 12px; }
button { margin-right: 8px; padding: 4px 12px; }
"""
# The buttons call plotly.js's own export in the browser: no server and no Chrome needed.
_BUNDLE_SCRIPT = """
const FIGURES = JSON.parse(document.getElementById("scembed-figures").textContent);
function save(i, format) {
  const f = FIGURES[i];
  return Plotly.downloadImage(document.getElementById("fig-" + i),
    {format: format, filename: f.name, scale: format === "png" ? SCALE : 1});
}
async function saveAll(format) {
  for (let i = 0; i < FIGURES.length; i++) { await save(i, format); }
}
FIGURES.forEach((f, i) => {
  Plotly.newPlot("fig-" + i, f.figure.data, f.figure.layout,
    {displaylogo: false, responsive: true,
     toImageButtonOptions: {format: "svg", filename: f.name}});
});
"""


def figure_bundle_html(figures: dict[str, go.Figure], *, title: str, png_scale: int = 4) -> bytes:
    """Every figure in one self-contained HTML page, each with PNG and SVG buttons.

    The page embeds plotly.js once and opens offline; its buttons ("PNG", "SVG", "All as
    PNG", "All as SVG") make the images in the reader's browser with plotly.js's own
    export (PNG at ``png_scale`` times the on-screen size), so they work wherever the page
    is opened, also when the app is hosted without a server-side browser.

    Parameters
    ----------
    figures
        File stem -> figure, in the order shown.
    title
        The page's heading (escaped).
    png_scale
        Scale factor of the PNG exports.
    """
    import html as html_lib

    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    names = ["".join(c if c.isalnum() or c in "-_" else "_" for c in n) for n in figures]
    payload = [
        {"name": name, "figure": json.loads(pio.to_json(fig, validate=False))}
        for name, fig in zip(names, figures.values(), strict=True)
    ]
    # "</" would end the script element early: escape it (the labels are the user's text)
    data = json.dumps(payload).replace("</", "<\\/")
    sections = "".join(
        f'<section><h2>{html_lib.escape(name)}</h2><div id="fig-{i}"></div>'
        f"<button onclick=\"save({i}, 'png')\">PNG</button>"
        f"<button onclick=\"save({i}, 'svg')\">SVG</button></section>"
        for i, name in enumerate(names)
    )
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html_lib.escape(title)}</title><style>{_BUNDLE_STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html_lib.escape(title)}</h1>"
        f"<p>{len(names)} figures. Each button saves an image made in this browser "
        f"(PNG at {png_scale}x the size shown, or SVG).</p>"
        "<p><button onclick=\"saveAll('png')\">All as PNG</button>"
        "<button onclick=\"saveAll('svg')\">All as SVG</button></p>"
        f"{sections}"
        f'<script type="application/json" id="scembed-figures">{data}</script>'
        f"<script>const SCALE = {int(png_scale)};{_BUNDLE_SCRIPT}</script></body></html>"
    )
    return page.encode("utf-8")
