"""Calibration plots of a label model: the reliability diagram and accuracy vs coverage.

Array-level builders over :func:`scembed_core.labels.calibration.calibration_summary`'s
output; :func:`scembed_core.pl.calibration` draws a reference's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .common import LAYOUT

__all__ = ["coverage_at", "coverage_curve", "reliability_curve"]


def reliability_curve(calibration: dict, *, title: str | None = None) -> go.Figure:
    """Draw the reliability diagram of held-out cells: top probability vs observed accuracy.

    Parameters
    ----------
    calibration
        :func:`scembed_core.labels.calibration.calibration_summary` output (a label model's
        ``calibration``).
    title
        Figure title (default: "Reliability" with the ECE).

    Returns
    -------
    plotly.graph_objects.Figure
        The diagonal, then one trace of bins whose marker size follows their cell count.
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
    fig.update_layout(title=title or default, height=360, **LAYOUT)
    fig.update_layout(legend={"orientation": "h", "y": -0.3})
    fig.update_xaxes(title="mean predicted probability (top class)", range=[0, 1.02])
    fig.update_yaxes(title="observed accuracy", range=[0, 1.02])
    return fig


def coverage_curve(calibration: dict, *, threshold: float | None = None) -> go.Figure:
    """Draw accuracy against the share of cells labelled as the probability threshold rises.

    Parameters
    ----------
    calibration
        :func:`scembed_core.labels.calibration.calibration_summary` output.
    threshold
        A threshold to mark (the Annotation page's slider).

    Returns
    -------
    plotly.graph_objects.Figure
        The curve, then the marked threshold's point when given.
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
    fig.update_layout(title=title, height=340, **LAYOUT)
    fig.update_layout(showlegend=False)
    fig.update_xaxes(title="share of cells that keep a label", tickformat=".0%")
    fig.update_yaxes(title="accuracy of labelled cells")
    return fig


def coverage_at(calibration: dict, threshold: float) -> tuple[float, float] | None:
    """Read the held-out cells' coverage and accuracy at the grid threshold nearest ``threshold``.

    Parameters
    ----------
    calibration
        :func:`scembed_core.labels.calibration.calibration_summary` output.
    threshold
        A probability threshold.

    Returns
    -------
    tuple of float or None
        ``(coverage, accuracy)``, accuracy NaN where no cell keeps a label; None without
        a coverage curve.
    """
    cov = calibration.get("coverage") or {}
    thresholds = np.asarray(cov.get("threshold", []), dtype=float)
    if not thresholds.size:
        return None
    i = int(np.argmin(np.abs(thresholds - threshold)))
    acc = cov["accuracy"][i]
    return float(cov["coverage"][i]), float("nan") if acc is None else float(acc)
