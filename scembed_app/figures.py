"""Plotly figure builders: arrays and frames in, ``go.Figure`` out.

Pure functions with no Streamlit import, so they are tested without AppTest. Every piece
of user-provided text that reaches a hover label or a legend entry (cell names, labels,
obs values) is HTML-escaped: Plotly renders a subset of HTML in hover text and trace names.
Large scatter plots use WebGL (``go.Scattergl``); the reference and the query layers are
both downsampled once large.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative  # not plotly.express: it imports much more (start-up)

__all__ = [
    "MAX_REFERENCE_POINTS",
    "MAX_QUERY_POINTS",
    "MAX_ANIMATED_POINTS",
    "UNASSIGNED_COLOR",
    "UNKNOWN_COLOR",
    "category_colors",
    "downsample",
    "escape_text",
    "hover_text",
    "reference_map",
    "query_map",
    "cluster_panels",
    "count_bar",
    "histogram",
    "resolution_curve",
    "confusion_heatmap",
    "projection_animation",
    "reliability_curve",
    "coverage_curve",
    "coverage_at",
]

MAX_REFERENCE_POINTS = 50_000
#: Query cells drawn at most on a map (a reproducible sample beyond).
MAX_QUERY_POINTS = 50_000
#: Query cells animated at most (the engine samples them).
MAX_ANIMATED_POINTS = 2_000
QUERY_COLOR = "#C0392B"
REFERENCE_GREY = "#D5D8DC"
UNASSIGNED_COLOR = "#7F8C8D"
#: Cells the reference's calibrated rule calls Unknown: their own, lighter grey.
UNKNOWN_COLOR = "#B3B6B7"
_UNASSIGNED_NAMES = frozenset(
    {"Unassigned", "unassigned", "Unmapped", "unmapped", "nan", "NA", "Unknown"}
)
_PALETTE = tuple(qualitative.Dark24 + qualitative.Alphabet)
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
    "legend": {"itemsizing": "constant"},
}


def escape_text(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    """HTML-escape every value (as text) so it is shown literally by Plotly."""
    return np.array([html.escape(str(v)) for v in values], dtype=object)


def downsample(n: int, max_points: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` points, chosen reproducibly."""
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def category_colors(categories: Sequence) -> dict:
    """A stable colour per category; 'Unassigned'-like categories are grey."""
    colors = {}
    i = 0
    for cat in categories:
        if str(cat) == "Unknown":
            colors[cat] = UNKNOWN_COLOR
        elif str(cat) in _UNASSIGNED_NAMES:
            colors[cat] = UNASSIGNED_COLOR
        else:
            colors[cat] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return colors


def _sorted_categories(values: pd.Series) -> list:
    """Categories in a natural order (numbers numerically), unassigned last."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [c for c in values.cat.categories if (values == c).any()]
    else:
        cats = list(pd.unique(values.dropna()))
        try:
            cats = sorted(cats, key=lambda c: (float(c), str(c)))
        except (TypeError, ValueError):
            cats = sorted(cats, key=str)
    return [c for c in cats if str(c) not in _UNASSIGNED_NAMES] + [
        c for c in cats if str(c) in _UNASSIGNED_NAMES
    ]


def hover_text(fields: pd.DataFrame) -> np.ndarray:
    """One escaped hover string per row: ``<b>first column</b><br>name: value ...``."""
    if fields.empty:
        return np.array([], dtype=object)
    columns = list(fields.columns)
    parts = [escape_text(fields[columns[0]].to_numpy())]
    text = np.char.add(np.char.add("<b>", parts[0].astype(str)), "</b>")
    for col in columns[1:]:
        values = fields[col]
        if pd.api.types.is_float_dtype(values):
            shown = np.array([f"{v:.3g}" if np.isfinite(v) else "NA" for v in values], dtype=str)
        else:
            shown = escape_text(values.to_numpy()).astype(str)
        prefix = f"<br>{html.escape(str(col))}: "
        text = np.char.add(np.char.add(text, prefix), shown)
    return text.astype(object)


def _shown(mask: np.ndarray, max_points: int) -> np.ndarray:
    """``mask`` thinned to a reproducible sample of at most ``max_points`` of its rows."""
    rows = np.flatnonzero(mask)
    if len(rows) <= max_points:
        return mask
    shown = np.zeros_like(mask)
    shown[rows[downsample(len(rows), max_points)]] = True
    return shown


def _reference_trace(
    coords: np.ndarray, max_points: int, *, name: str = "reference"
) -> go.Scattergl:
    idx = downsample(len(coords), max_points)
    return go.Scattergl(
        x=coords[idx, 0],
        y=coords[idx, 1],
        mode="markers",
        name=name,
        marker={"size": 3, "color": REFERENCE_GREY},
        hoverinfo="skip",
        showlegend=True,
    )


def _finish_map(fig: go.Figure, title: str | None, height: int) -> go.Figure:
    fig.update_layout(title=title, height=height, **_LAYOUT)
    fig.update_xaxes(showticklabels=False, title=None, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, title=None, showgrid=False, zeroline=False)
    return fig


def _categorical_traces(
    coords: np.ndarray,
    values: pd.Series,
    text: np.ndarray | None,
    *,
    size: int,
) -> list[go.Scattergl]:
    cats = _sorted_categories(values)
    colors = category_colors(cats)
    traces = []
    array = values.to_numpy()
    for cat in cats:
        mask = array == cat
        traces.append(
            go.Scattergl(
                x=coords[mask, 0],
                y=coords[mask, 1],
                mode="markers",
                name=f"{html.escape(str(cat))} ({int(mask.sum())})",
                marker={"size": size, "color": colors[cat]},
                text=None if text is None else text[mask],
                hovertemplate="%{text}<extra></extra>" if text is not None else None,
                hoverinfo=None if text is not None else "skip",
            )
        )
    return traces


def reference_map(
    coords: np.ndarray,
    labels: Sequence | pd.Series,
    *,
    max_points: int = MAX_REFERENCE_POINTS,
    title: str | None = None,
    height: int = 600,
) -> go.Figure:
    """The reference UMAP coloured by cell type (downsampled to ``max_points``)."""
    coords = np.asarray(coords, dtype=float)
    idx = downsample(len(coords), max_points)
    values = pd.Series(np.asarray(labels, dtype=object)[idx]).astype(str)
    text = hover_text(pd.DataFrame({"cell type": values}))
    fig = go.Figure(_categorical_traces(coords[idx], values, text, size=3))
    return _finish_map(fig, title, height)


def query_map(
    coords: np.ndarray,
    color: pd.Series,
    hover: pd.DataFrame,
    *,
    reference_coords: np.ndarray | None = None,
    max_reference_points: int = MAX_REFERENCE_POINTS,
    max_points: int = MAX_QUERY_POINTS,
    continuous: bool | None = None,
    title: str | None = None,
    height: int = 650,
) -> go.Figure:
    """Query cells coloured by ``color`` on top of the reference map in light grey.

    Parameters
    ----------
    coords
        ``(n_cells, 2)`` query coordinates; rows with NaN (unmapped cells) are skipped.
    color
        One value per query cell. Numeric values get a colour scale, others a legend.
    hover
        Hover fields per query cell; the first column is shown in bold (the cell name).
    reference_coords
        Reference map coordinates drawn underneath in grey (downsampled).
    max_points
        Query cells drawn at most (a reproducible sample of the placed cells beyond).
    continuous
        Force a colour scale (True) or categories (False); inferred when None.
    """
    coords = np.asarray(coords, dtype=float)
    color = pd.Series(np.asarray(color), name=color.name if hasattr(color, "name") else None)
    keep = _shown(np.isfinite(coords).all(axis=1), max_points)
    fig = go.Figure()
    if reference_coords is not None:
        fig.add_trace(_reference_trace(np.asarray(reference_coords, float), max_reference_points))
    text = hover_text(hover.reset_index(drop=True).loc[keep])
    values = color[keep].reset_index(drop=True)
    if continuous is None:
        continuous = pd.api.types.is_numeric_dtype(values) and values.nunique() > 24
    if continuous:
        numeric = pd.to_numeric(values, errors="coerce")
        fig.add_trace(
            go.Scattergl(
                x=coords[keep, 0],
                y=coords[keep, 1],
                mode="markers",
                name=html.escape(str(color.name or "value")),
                marker={
                    "size": 4,
                    "color": numeric.to_numpy(),
                    "colorscale": "Viridis",
                    "showscale": True,
                    "colorbar": {"title": {"text": html.escape(str(color.name or ""))}},
                },
                text=text,
                hovertemplate="%{text}<extra></extra>",
                showlegend=False,
            )
        )
    else:
        for trace in _categorical_traces(coords[keep], values.astype(str), text, size=4):
            fig.add_trace(trace)
    return _finish_map(fig, title, height)


def cluster_panels(
    coords: np.ndarray,
    clusters: Sequence | pd.Series,
    *,
    reference_coords: np.ndarray | None = None,
    max_reference_points: int = 5_000,
    max_points: int = MAX_QUERY_POINTS,
    n_cols: int = 4,
    panel_height: int = 220,
) -> go.Figure:
    """Small multiples: one panel per cluster over the grey reference (paper Fig. 4F)."""
    coords = np.asarray(coords, dtype=float)
    values = pd.Series(np.asarray(clusters, dtype=object)).astype(str)
    placed = np.isfinite(coords).all(axis=1)
    cats = _sorted_categories(values[placed])
    colors = category_colors(cats)
    n_cols = max(1, min(n_cols, len(cats)))
    n_rows = max(1, int(np.ceil(len(cats) / n_cols)))
    titles = [f"{html.escape(str(c))} ({int(((values == c) & placed).sum())})" for c in cats]
    keep = _shown(placed, max_points)
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=titles,
        horizontal_spacing=0.02,
        vertical_spacing=0.25 / n_rows,
    )
    background = coords[keep] if reference_coords is None else np.asarray(reference_coords, float)
    bg_idx = downsample(len(background), max_reference_points)
    for i, cat in enumerate(cats):
        row, col = i // n_cols + 1, i % n_cols + 1
        fig.add_trace(
            go.Scattergl(
                x=background[bg_idx, 0],
                y=background[bg_idx, 1],
                mode="markers",
                marker={"size": 2, "color": REFERENCE_GREY},
                hoverinfo="skip",
                showlegend=False,
            ),
            row=row,
            col=col,
        )
        mask = keep & (values.to_numpy() == cat)
        fig.add_trace(
            go.Scattergl(
                x=coords[mask, 0],
                y=coords[mask, 1],
                mode="markers",
                marker={"size": 3, "color": colors[cat]},
                name=html.escape(str(cat)),
                hoverinfo="skip",
                showlegend=False,
            ),
            row=row,
            col=col,
        )
    fig.update_layout(height=panel_height * n_rows, **_LAYOUT)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return fig


def count_bar(
    counts: pd.Series,
    *,
    title: str | None = None,
    x_title: str = "cells",
    horizontal: bool = True,
) -> go.Figure:
    """Bar chart of category counts (largest first), e.g. cell types or cluster sizes."""
    colors = category_colors(_sorted_categories(pd.Series(counts.index)))  # as on the maps
    counts = counts.sort_values(ascending=horizontal)
    names = escape_text(counts.index)
    bar = go.Bar(
        x=counts.to_numpy() if horizontal else names,
        y=names if horizontal else counts.to_numpy(),
        orientation="h" if horizontal else "v",
        marker={"color": [colors[c] for c in counts.index]},
        hovertemplate="%{y}: %{x}<extra></extra>" if horizontal else "%{x}: %{y}<extra></extra>",
    )
    fig = go.Figure(bar)
    height = max(250, 22 * len(counts) + 80) if horizontal else 350
    fig.update_layout(title=title, height=height, **_LAYOUT)
    if horizontal:
        fig.update_xaxes(title=x_title)
    else:
        fig.update_yaxes(title=x_title)
        fig.update_xaxes(type="category")
    return fig


def histogram(
    values: np.ndarray,
    *,
    title: str | None = None,
    x_title: str = "",
    nbins: int = 50,
    log_x: bool = False,
) -> go.Figure:
    """A histogram of per-cell values (e.g. mapped regions per cell)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if log_x:
        values = np.log10(values + 1)
        x_title = f"log10({x_title} + 1)"
    fig = go.Figure(go.Histogram(x=values, nbinsx=nbins, marker={"color": "#2E6F9E"}))
    fig.update_layout(title=title, height=300, bargap=0.02, **_LAYOUT)
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="cells")
    return fig


def resolution_curve(curve: pd.DataFrame, *, current: float | None = None) -> go.Figure:
    """Louvain resolution -> number of clusters, with the current resolution marked."""
    curve = curve.sort_values("resolution")
    fig = go.Figure(
        go.Scatter(
            x=curve["resolution"],
            y=curve["n_clusters"],
            mode="lines+markers",
            line={"shape": "hv", "color": "#2E6F9E"},
            hovertemplate="resolution %{x:.2f}: %{y} clusters<extra></extra>",
        )
    )
    if current is not None:
        fig.add_vline(x=current, line_dash="dash", line_color="#C0392B")
    fig.update_layout(title="Resolution vs. number of clusters", height=320, **_LAYOUT)
    fig.update_xaxes(title="Louvain resolution")
    fig.update_yaxes(title="clusters")
    return fig


def confusion_heatmap(confusion: pd.DataFrame, *, normalize_rows: bool = True) -> go.Figure:
    """Truth (rows) x predicted (columns) heatmap; row-normalised shows recall per class."""
    counts = confusion.astype(float)
    if normalize_rows:
        totals = counts.sum(axis=1).replace(0, np.nan)
        values = counts.div(totals, axis=0).fillna(0.0)
        text = values.map(lambda v: f"{v:.2f}")
        colorbar = "fraction of row"
    else:
        values = counts
        text = counts.map(lambda v: f"{int(v)}")
        colorbar = "cells"
    rows = escape_text(confusion.index)
    cols = escape_text(confusion.columns)
    fig = go.Figure(
        go.Heatmap(
            z=values.to_numpy(),
            x=cols,
            y=rows,
            text=text.to_numpy(),
            texttemplate="%{text}" if values.size <= 900 else None,
            colorscale="Blues",
            colorbar={"title": {"text": colorbar}},
            hovertemplate="truth %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    size = max(400, 28 * max(len(rows), len(cols)) + 160)
    fig.update_layout(title="Confusion matrix", height=size, **_LAYOUT)
    fig.update_xaxes(title="predicted (mapped to your labels)", type="category", tickangle=-45)
    fig.update_yaxes(title="truth", type="category", autorange="reversed")
    return fig


def projection_animation(
    frames: np.ndarray,
    frame_epochs: Sequence[int],
    *,
    reference_coords: np.ndarray,
    max_reference_points: int = 20_000,
    duration_ms: int = 150,
    height: int = 650,
    title: str | None = None,
) -> go.Figure:
    """Query cells moving from their first to their final place over the grey reference.

    Parameters
    ----------
    frames
        ``(n_frames, n_cells, 2)`` positions of (a sample of) query cells: the start, then
        after each recorded epoch (:attr:`scembed_core.evmap.MapTransform.frames`).
    frame_epochs
        Epochs done at each frame (0 = the start).
    reference_coords
        The reference map, drawn in grey (downsampled).
    """
    frames = np.asarray(frames, dtype=float)
    epochs = [int(e) for e in frame_epochs]
    if frames.ndim != 3 or frames.shape[0] != len(epochs) or frames.shape[2] != 2:
        raise ValueError("frames must be (n_frames, n_cells, 2) with one epoch count per frame.")
    reference = np.asarray(reference_coords, dtype=float)
    everything = np.concatenate([reference, frames.reshape(-1, 2)])
    low, high = np.nanmin(everything, axis=0), np.nanmax(everything, axis=0)
    pad = 0.05 * (high - low)

    def cells(frame: np.ndarray) -> go.Scatter:
        return go.Scatter(
            x=frame[:, 0],
            y=frame[:, 1],
            mode="markers",
            name=f"query cells ({frames.shape[1]:,})",
            marker={"size": 4, "color": QUERY_COLOR, "opacity": 0.8},
            hoverinfo="skip",
        )

    fig = go.Figure(
        data=[_reference_trace(reference, max_reference_points), cells(frames[-1])],
        frames=[
            go.Frame(data=[cells(frame)], traces=[1], name=str(epoch))
            for frame, epoch in zip(frames, epochs, strict=True)
        ],
    )
    step_args = {"mode": "immediate", "transition": {"duration": duration_ms, "easing": "linear"}}
    play = {
        "frame": {"duration": duration_ms, "redraw": False},
        "fromcurrent": False,
        **step_args,
    }
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "showactive": False,
                "x": 0.0,
                "y": 0.0,
                "xanchor": "left",
                "yanchor": "top",
                "pad": {"t": 10},
                "buttons": [
                    {"label": "Play", "method": "animate", "args": [None, play]},
                    {
                        "label": "Pause",
                        "method": "animate",
                        "args": [[None], {"frame": {"duration": 0}, "mode": "immediate"}],
                    },
                ],
            }
        ],
        sliders=[
            {
                "active": len(epochs) - 1,
                "x": 0.12,
                "len": 0.88,
                "y": 0.0,
                "yanchor": "top",
                "pad": {"t": 10},
                "currentvalue": {"prefix": "epoch "},
                "steps": [
                    {
                        "label": str(epoch),
                        "method": "animate",
                        "args": [
                            [str(epoch)],
                            {"frame": {"duration": 0, "redraw": False}, **step_args},
                        ],
                    }
                    for epoch in epochs
                ],
            }
        ],
    )
    _finish_map(fig, title, height)
    fig.update_xaxes(range=[low[0] - pad[0], high[0] + pad[0]])
    fig.update_yaxes(range=[low[1] - pad[1], high[1] + pad[1]])
    return fig


def reliability_curve(calibration: dict, *, title: str | None = None) -> go.Figure:
    """Reliability diagram of held-out cells: mean top probability vs observed accuracy.

    ``calibration`` is :func:`scembed_core.labels.calibration.calibration_summary` output; marker
    size follows the number of cells per bin.
    """
    rel = calibration.get("reliability") or {}
    frame = pd.DataFrame(
        {
            "p": rel.get("mean_predicted", []),
            "acc": rel.get("accuracy", []),
            "n": rel.get("count", []),
        }
    ).dropna()
    sizes = 6 + 18 * np.sqrt(frame["n"] / max(float(frame["n"].max()), 1.0)) if len(frame) else []
    fig = go.Figure(
        [
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                line={"dash": "dash", "color": "#95A5A6"},
                name="perfectly calibrated",
                hoverinfo="skip",
            ),
            go.Scatter(
                x=frame["p"],
                y=frame["acc"],
                mode="lines+markers",
                marker={"size": sizes, "color": "#2E6F9E"},
                line={"color": "#2E6F9E"},
                name="held-out reference cells",
                customdata=frame["n"],
                hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}<br>%{customdata} cells"
                "<extra></extra>",
            ),
        ]
    )
    ece = calibration.get("ece")
    default = "Reliability" + (f" (ECE {ece:.3f})" if ece is not None else "")
    fig.update_layout(title=title or default, height=360, **_LAYOUT)
    fig.update_layout(legend={"orientation": "h", "y": -0.3})
    fig.update_xaxes(title="mean predicted probability (top class)", range=[0, 1.02])
    fig.update_yaxes(title="observed accuracy", range=[0, 1.02])
    return fig


def coverage_curve(calibration: dict, *, threshold: float | None = None) -> go.Figure:
    """Accuracy vs share of cells labelled as the probability threshold rises.

    With ``threshold``, the point where the Annotation page's slider sits is marked.
    """
    cov = calibration.get("coverage") or {}
    frame = pd.DataFrame(
        {
            "t": cov.get("threshold", []),
            "coverage": cov.get("coverage", []),
            "acc": cov.get("accuracy", []),
        }
    ).dropna()
    fig = go.Figure(
        go.Scatter(
            x=frame["coverage"],
            y=frame["acc"],
            mode="lines+markers",
            line={"color": "#2E6F9E"},
            name="thresholds",
            customdata=frame["t"],
            hovertemplate="threshold %{customdata:.2f}<br>%{x:.0%} of cells labelled<br>"
            "accuracy %{y:.3f}<extra></extra>",
        )
    )
    if threshold is not None and len(frame):
        at = frame.iloc[int(np.argmin(np.abs(frame["t"].to_numpy() - threshold)))]
        fig.add_trace(
            go.Scatter(
                x=[at["coverage"]],
                y=[at["acc"]],
                mode="markers",
                marker={"size": 14, "color": "#C0392B", "symbol": "diamond"},
                name=f"threshold {threshold:.2f}",
                hovertemplate="your threshold<br>%{x:.0%} labelled, accuracy %{y:.3f}"
                "<extra></extra>",
            )
        )
    title = "Accuracy vs coverage" + (" (◆ your threshold)" if threshold is not None else "")
    fig.update_layout(title=title, height=340, **_LAYOUT)
    fig.update_layout(showlegend=False)
    fig.update_xaxes(title="share of cells that keep a label", tickformat=".0%")
    fig.update_yaxes(title="accuracy of labelled cells")
    return fig


def coverage_at(calibration: dict, threshold: float) -> tuple[float, float] | None:
    """(coverage, accuracy) of the held-out cells at the grid threshold nearest ``threshold``."""
    cov = calibration.get("coverage") or {}
    thresholds = np.asarray(cov.get("threshold", []), dtype=float)
    if not thresholds.size:
        return None
    i = int(np.argmin(np.abs(thresholds - threshold)))
    acc = cov["accuracy"][i]
    return float(cov["coverage"][i]), float("nan") if acc is None else float(acc)
