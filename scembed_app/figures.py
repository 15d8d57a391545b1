"""The app's Plotly figures: the engine's :mod:`scembed_core.pl` builders, as the pages name them.

The figures themselves live in the engine (``se.pl``), so a notebook draws what the app
draws: maps in :mod:`scembed_core.pl.maps`, charts in :mod:`scembed_core.pl.charts`,
calibration plots in :mod:`scembed_core.pl.reliability`, colours in
:mod:`scembed_core.pl.palette` (:func:`label_colors`, the one place that picks a colour).
Showing a figure in Streamlit is :func:`scembed_app.widgets.plot`'s job. Add a new figure to
the engine module of its kind and re-export it here.
"""

from __future__ import annotations

from scembed_core.pl.charts import confusion_heatmap, count_bar, histogram, resolution_curve
from scembed_core.pl.common import downsample, escape_text, hover_text
from scembed_core.pl.maps import (
    MAX_ANIMATED_POINTS,
    MAX_QUERY_POINTS,
    MAX_REFERENCE_POINTS,
    cluster_panels,
    projection_animation,
    query_map,
    reference_map,
)
from scembed_core.pl.palette import UNASSIGNED_COLOR, UNKNOWN_COLOR, label_colors
from scembed_core.pl.reliability import coverage_at, coverage_curve, reliability_curve

__all__ = [
    "MAX_REFERENCE_POINTS",
    "MAX_QUERY_POINTS",
    "MAX_ANIMATED_POINTS",
    "UNASSIGNED_COLOR",
    "UNKNOWN_COLOR",
    "label_colors",
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
