"""Maps: the reference UMAP, query cells on it, one panel per cluster, the projection movie.

Array-level builders (coordinates and values in, ``plotly.graph_objects.Figure`` out); the
AnnData-first wrappers are in :mod:`scembed_core.pl`. Large scatter plots use WebGL
(``go.Scattergl``); the reference and the query layers are both downsampled once large.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import ParameterError
from .common import LAYOUT, downsample, hover_text, thin_mask
from .palette import QUERY_COLOR, REFERENCE_GREY, label_colors, sorted_categories

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = [
    "MAX_ANIMATED_POINTS",
    "MAX_QUERY_POINTS",
    "MAX_REFERENCE_POINTS",
    "cluster_panels",
    "projection_animation",
    "query_map",
    "reference_map",
]

#: Reference cells drawn at most on a map (a reproducible sample beyond).
MAX_REFERENCE_POINTS = 50_000
#: Query cells drawn at most on a map (a reproducible sample beyond).
MAX_QUERY_POINTS = 50_000
#: Query cells animated at most (the engine samples them).
MAX_ANIMATED_POINTS = 2_000


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
    fig.update_layout(title=title, height=height, **LAYOUT)
    fig.update_xaxes(showticklabels=False, title=None, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, title=None, showgrid=False, zeroline=False)
    return fig


def _categorical_traces(
    coords: np.ndarray,
    values: pd.Series,
    text: np.ndarray | None,
    *,
    size: int,
    reference: Reference | None = None,
    label_hover: bool = False,
) -> list[go.Scattergl]:
    """Build one WebGL trace per category.

    Hover: ``text`` per point; else (``label_hover``) the category's name, one string per
    trace rather than one per point; else none.
    """
    cats = sorted_categories(values)
    colors = label_colors(cats, reference)
    traces = []
    array = values.to_numpy()
    for cat in cats:
        mask = array == cat
        if text is not None:
            hover = {"text": text[mask], "hovertemplate": "%{text}<extra></extra>"}
        elif label_hover:  # one string for the whole trace, not one per point
            hover = {"hovertext": f"<b>{html.escape(str(cat))}</b>", "hoverinfo": "text"}
        else:
            hover = {"hoverinfo": "skip"}
        traces.append(
            go.Scattergl(
                x=coords[mask, 0],
                y=coords[mask, 1],
                mode="markers",
                name=f"{html.escape(str(cat))} ({int(mask.sum())})",
                marker={"size": size, "color": colors[cat]},
                **hover,
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
    reference: Reference | None = None,
    colors: Mapping | None = None,
    kind: str = "cell type",
) -> go.Figure:
    """Draw the reference UMAP coloured by cell type (downsampled to ``max_points``).

    Parameters
    ----------
    coords
        ``(n_cells, 2)`` map coordinates.
    labels
        One label per cell.
    max_points
        Cells drawn at most (a reproducible sample beyond).
    title, height
        Figure title and height in pixels.
    reference
        Passed to :func:`~scembed_core.pl.palette.label_colors` (its colour map, if any).
    colors
        A ``{label: colour}`` map used instead of ``reference``'s (the app passes the
        reference's map with the user's names for its labels).
    kind
        What ``labels`` are, as the hover text names them (``"lineage"`` for lineages).

    Returns
    -------
    plotly.graph_objects.Figure
        One WebGL trace per label, named ``"label (n)"``.
    """
    reference = colors if colors is not None else reference
    # single precision is plenty for a picture and halves what the browser receives
    coords = np.asarray(coords, dtype=np.float32)
    idx = downsample(len(coords), max_points)
    values = pd.Series(np.asarray(labels, dtype=object)[idx]).astype(str)
    traces = _categorical_traces(
        coords[idx], values, None, size=3, reference=reference, label_hover=True
    )
    return _finish_map(go.Figure(traces), title, height)


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
    reference: Reference | None = None,
    colors: Mapping | None = None,
) -> go.Figure:
    """Draw query cells coloured by ``color`` on top of the reference map in light grey.

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
    max_reference_points
        Reference cells drawn at most.
    max_points
        Query cells drawn at most (a reproducible sample of the placed cells beyond).
    continuous
        Force a colour scale (True) or categories (False); inferred when None.
    title, height
        Figure title and height in pixels.
    reference
        Passed to :func:`~scembed_core.pl.palette.label_colors` (its colour map, if any).
    colors
        A ``{label: colour}`` map used instead of ``reference``'s (the app passes the
        reference's map with the user's names for its labels).

    Returns
    -------
    plotly.graph_objects.Figure
        The grey ``"reference"`` trace first (when given), then one trace per category or
        one trace with a colour scale.
    """
    reference = colors if colors is not None else reference
    coords = np.asarray(coords, dtype=np.float32)  # as the reference map: half the bytes
    color = pd.Series(np.asarray(color), name=color.name if hasattr(color, "name") else None)
    keep = thin_mask(np.isfinite(coords).all(axis=1), max_points)
    fig = go.Figure()
    if reference_coords is not None:
        reference_coords = np.asarray(reference_coords, np.float32)
        fig.add_trace(_reference_trace(reference_coords, max_reference_points))
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
        traces = _categorical_traces(
            coords[keep], values.astype(str), text, size=4, reference=reference
        )
        for trace in traces:
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
    colors: Mapping | None = None,
) -> go.Figure:
    """Draw small multiples: one panel per cluster over the grey reference (paper Fig. 4F).

    Parameters
    ----------
    coords
        ``(n_cells, 2)`` query coordinates; NaN rows are skipped.
    clusters
        One cluster (or label) per cell.
    reference_coords
        Background of every panel (default: the query cells themselves).
    max_reference_points
        Background points drawn at most per panel.
    max_points
        Query cells drawn at most.
    n_cols
        Panels per row.
    panel_height
        Height of one row of panels in pixels.
    colors
        A ``{label: colour}`` map used instead of ``reference``'s (the app passes the
        reference's map with the user's names for its labels).

    Returns
    -------
    plotly.graph_objects.Figure
        Two traces per panel (background, cells), panels titled ``"cluster (n)"``.
    """
    coords = np.asarray(coords, dtype=float)
    values = pd.Series(np.asarray(clusters, dtype=object)).astype(str)
    placed = np.isfinite(coords).all(axis=1)
    cats = sorted_categories(values[placed])
    colors = label_colors(cats, colors)
    n_cols = max(1, min(n_cols, len(cats)))
    n_rows = max(1, int(np.ceil(len(cats) / n_cols)))
    titles = [f"{html.escape(str(c))} ({int(((values == c) & placed).sum())})" for c in cats]
    keep = thin_mask(placed, max_points)
    from plotly.subplots import make_subplots  # imported when used: it slows the app's start

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
    fig.update_layout(height=panel_height * n_rows, **LAYOUT)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
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
    """Animate query cells moving from their first to their final place on the reference.

    Parameters
    ----------
    frames
        ``(n_frames, n_cells, 2)`` positions of (a sample of) query cells: the start, then
        after each recorded epoch (:attr:`scembed_core.evmap.MapTransform.frames`).
    frame_epochs
        Epochs done at each frame (0 = the start).
    reference_coords
        The reference map, drawn in grey (downsampled).
    max_reference_points
        Reference cells drawn at most.
    duration_ms
        Duration of one frame when playing.
    height, title
        Figure height in pixels and title.

    Returns
    -------
    plotly.graph_objects.Figure
        The grey reference and the cells at their final place, one frame per epoch, a
        play button and an epoch slider.

    Raises
    ------
    scembed_core.errors.ParameterError
        ``frames`` is not ``(n_frames, n_cells, 2)`` with one epoch per frame.
    """
    frames = np.asarray(frames, dtype=float)
    epochs = [int(e) for e in frame_epochs]
    if frames.ndim != 3 or frames.shape[0] != len(epochs) or frames.shape[2] != 2:
        raise ParameterError(
            "frames must be (n_frames, n_cells, 2) with one epoch count per frame."
        )
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
