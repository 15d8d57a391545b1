"""What the figures share: HTML escaping, hover text, reproducible samples, the layout.

Every piece of user-provided text that reaches a hover label or a legend entry (cell names,
labels, obs values) is HTML-escaped: Plotly renders a subset of HTML in hover text and
trace names.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

__all__ = ["LAYOUT", "downsample", "escape_text", "hover_text", "thin_mask"]

#: Layout every figure starts from (a plain dict: no plotly import here).
LAYOUT: Mapping = MappingProxyType(
    {
        "template": "plotly_white",
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"itemsizing": "constant"},
    }
)


def escape_text(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    """HTML-escape every value (as text) so that Plotly shows it literally.

    Parameters
    ----------
    values
        Any values; each is converted with ``str``.

    Returns
    -------
    numpy.ndarray
        Object array of escaped strings.
    """
    return np.array([html.escape(str(v)) for v in values], dtype=object)


def downsample(n: int, max_points: int, *, seed: int = 0) -> np.ndarray:
    """Choose at most ``max_points`` of ``n`` points, reproducibly.

    Parameters
    ----------
    n
        Number of points.
    max_points
        The most to keep.
    seed
        Seed of the sample.

    Returns
    -------
    numpy.ndarray
        Sorted indices (all of ``range(n)`` when ``n <= max_points``).
    """
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def thin_mask(mask: np.ndarray, max_points: int) -> np.ndarray:
    """Thin a boolean mask to a reproducible sample of at most ``max_points`` of its rows.

    Parameters
    ----------
    mask
        Rows that may be drawn.
    max_points
        The most to keep.

    Returns
    -------
    numpy.ndarray
        A boolean mask, a subset of ``mask``.
    """
    rows = np.flatnonzero(mask)
    if len(rows) <= max_points:
        return mask
    shown = np.zeros_like(mask)
    shown[rows[downsample(len(rows), max_points)]] = True
    return shown


def hover_text(fields: pd.DataFrame) -> np.ndarray:
    """Build one escaped hover string per row: ``<b>first column</b><br>name: value ...``.

    Parameters
    ----------
    fields
        One row per point; the first column is shown in bold, floats with 3 digits.

    Returns
    -------
    numpy.ndarray
        Object array of hover strings.
    """
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
