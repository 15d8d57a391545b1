"""Charts: bar charts of counts, histograms, the resolution curve, the confusion matrix.

Array-level builders (series and frames in, ``plotly.graph_objects.Figure`` out); the
AnnData-first wrappers are in :mod:`scembed_core.pl`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import LAYOUT, escape_text
from .palette import label_colors, sorted_categories

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = ["confusion_heatmap", "count_bar", "histogram", "resolution_curve"]


def count_bar(
    counts: pd.Series,
    *,
    title: str | None = None,
    x_title: str = "cells",
    horizontal: bool = True,
    reference: Reference | None = None,
    colors: Mapping | None = None,
) -> go.Figure:
    """Draw a bar chart of category counts (largest first), e.g. cell types or cluster sizes.

    Parameters
    ----------
    counts
        Count per category (the index).
    title
        Figure title.
    x_title
        Title of the count axis.
    horizontal
        Horizontal bars (categories on the y axis).
    reference
        Passed to :func:`~scembed_core.pl.palette.label_colors`, so bars match the maps.
    colors
        A ``{label: colour}`` map used instead of ``reference``'s (the app passes the
        reference's map with the user's names for its labels).

    Returns
    -------
    plotly.graph_objects.Figure
        One bar trace, each bar in its category's map colour.
    """
    reference = colors if colors is not None else reference
    colors = label_colors(sorted_categories(pd.Series(counts.index)), reference)
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
    fig.update_layout(title=title, height=height, **LAYOUT)
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
    """Draw a histogram of per-cell values (e.g. mapped regions per cell).

    Parameters
    ----------
    values
        One value per cell; non-finite values are left out.
    title
        Figure title.
    x_title
        Title of the value axis.
    nbins
        Number of bins.
    log_x
        Bin ``log10(value + 1)`` instead.

    Returns
    -------
    plotly.graph_objects.Figure
        One histogram trace.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if log_x:
        values = np.log10(values + 1)
        x_title = f"log10({x_title} + 1)"
    fig = go.Figure(go.Histogram(x=values, nbinsx=nbins, marker={"color": "#2E6F9E"}))
    fig.update_layout(title=title, height=300, bargap=0.02, **LAYOUT)
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title="cells")
    return fig


def resolution_curve(curve: pd.DataFrame, *, current: float | None = None) -> go.Figure:
    """Draw Louvain resolution against number of clusters, the current resolution marked.

    Parameters
    ----------
    curve
        Columns ``resolution`` and ``n_clusters``.
    current
        The resolution in use (a dashed vertical line).

    Returns
    -------
    plotly.graph_objects.Figure
        One step-line trace.
    """
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
    fig.update_layout(title="Resolution vs. number of clusters", height=320, **LAYOUT)
    fig.update_xaxes(title="Louvain resolution")
    fig.update_yaxes(title="clusters")
    return fig


def _swatched(names: Sequence, colors: Mapping | None) -> list[str] | None:
    """Return tick labels with a square of each label's colour in front (None: no colours)."""
    if colors is None:
        return None
    shown = label_colors(list(names), colors)
    return [f'<span style="color:{shown[n]}">\u25a0</span> {html.escape(str(n))}' for n in names]


def confusion_heatmap(
    confusion: pd.DataFrame,
    *,
    normalize_rows: bool = True,
    colors: Mapping | None = None,
    title: str = "Confusion matrix",
) -> go.Figure:
    """Draw a truth (rows) x predicted (columns) heatmap; row-normalised shows recall.

    Parameters
    ----------
    confusion
        Cell counts, truth labels as the index and predicted labels as the columns
        (:attr:`scembed_core.evaluate.ClassificationReport.confusion`).
    normalize_rows
        Show the fraction of each row (recall per class) rather than counts.
    colors
        A ``{label: colour}`` map (:func:`~scembed_core.pl.palette.label_colors`): each tick
        label then carries a square of its label's colour.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap trace, values written in the cells up to 30 x 30 classes.
    """
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
    fig.update_layout(title=title, height=size, **LAYOUT)
    fig.update_xaxes(title="predicted (mapped to your labels)", type="category", tickangle=-45)
    fig.update_yaxes(title="truth", type="category", autorange="reversed")
    x_ticks, y_ticks = _swatched(confusion.columns, colors), _swatched(confusion.index, colors)
    if x_ticks is not None:
        fig.update_xaxes(tickmode="array", tickvals=list(cols), ticktext=x_ticks)
        fig.update_yaxes(tickmode="array", tickvals=list(rows), ticktext=y_ticks)
    return fig
