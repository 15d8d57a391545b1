"""Colours of categories: the one place that decides which label gets which colour.

No plotly here, so the palette serves any plotting library. :func:`label_colors` is the
hook to extend (a bundle's own colour map, lineage colours); every map, bar chart and
legend of :mod:`scembed_core.pl` and the app takes its colours from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from ..reference import Reference

__all__ = [
    "PALETTE",
    "QUERY_COLOR",
    "REFERENCE_GREY",
    "UNASSIGNED_COLOR",
    "UNASSIGNED_NAMES",
    "UNKNOWN_COLOR",
    "is_unassigned",
    "label_colors",
    "sorted_categories",
]

#: Plotly's qualitative ``Dark24`` then ``Alphabet`` (copied so this module needs no plotly;
#: a test holds them equal to plotly's).
PALETTE: tuple[str, ...] = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86",
    "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE",
    "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
    "#AA0DFE", "#3283FE", "#85660D", "#782AB6", "#565656", "#1C8356", "#16FF32", "#F7E1A0",
    "#E2E2E2", "#1CBE4F", "#C4451C", "#DEA0FD", "#FE00FA", "#325A9B", "#FEAF16", "#F8A19F",
    "#90AD1C", "#F6222E", "#1CFFCE", "#2ED9FF", "#B10DA1", "#C075A6", "#FC1CBF", "#B00068",
    "#FBE426", "#FA0087",
)  # fmt: skip
#: Grey of cells without a label or cluster ("Unassigned" and the like).
UNASSIGNED_COLOR = "#7F8C8D"
#: Cells the reference's calibrated rule calls Unknown: their own, lighter grey.
UNKNOWN_COLOR = "#B3B6B7"
#: Light grey of the reference cells under a query map.
REFERENCE_GREY = "#D5D8DC"
#: Colour of query cells drawn in one colour (the projection animation).
QUERY_COLOR = "#C0392B"
#: Category names drawn grey and listed last.
UNASSIGNED_NAMES = frozenset(
    {"Unassigned", "unassigned", "Unmapped", "unmapped", "nan", "NA", "Unknown"}
)


def is_unassigned(category: object) -> bool:
    """Tell whether a category means "no label" (drawn grey, listed last).

    Parameters
    ----------
    category
        A category value (compared as text).

    Returns
    -------
    bool
        True for "Unassigned", "Unmapped", "Unknown", "nan", "NA" (and lower-case forms).
    """
    return str(category) in UNASSIGNED_NAMES


def label_colors(labels: Iterable, reference: Reference | Mapping | None = None) -> dict:
    """Give every label a colour: the reference's map where it has one, else the palette.

    Parameters
    ----------
    labels
        The categories in the order they are listed (e.g. :func:`sorted_categories`).
    reference
        A reference (its bundle's ``label_colors`` map, or the same map computed once for an
        old bundle: :func:`scembed_core.lineage.reference_label_colors`), or such a
        ``{label: "#RRGGBB"}`` map itself (the app passes the map with the user's names for
        the reference's labels, :func:`scembed_app.results.chart_colors`).

    Returns
    -------
    dict
        ``{label: colour}`` for every label; labels matching the map up to case and
        punctuation keep its colour, "Unknown" is light grey, "Unassigned"-like labels grey,
        any other label a colour-blind-safe palette colour (:func:`scembed_core.palette.label_colors`).
    """
    from ..palette import label_colors as palette_colors

    if reference is None or isinstance(reference, Mapping):
        base = dict(reference or {})
    else:
        from ..lineage import reference_label_colors

        stored = (getattr(reference, "manifest", None) or {}).get("label_colors") or {}
        own = {k: v for k, v in stored.items() if isinstance(v, str)}  # a flat map wins
        base = {**reference_label_colors(reference), **own}
    colors = palette_colors(labels, base)
    for label in colors:
        if str(label) == "Unknown":
            colors[label] = UNKNOWN_COLOR
        elif is_unassigned(label):
            colors[label] = UNASSIGNED_COLOR
    return colors


def sorted_categories(values: pd.Series | Sequence) -> list:
    """List the categories present in a natural order: numbers numerically, unassigned last.

    Parameters
    ----------
    values
        One value per cell; a categorical keeps its category order.

    Returns
    -------
    list
        The distinct values present (NaN left out).
    """
    values = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [c for c in values.cat.categories if (values == c).any()]
    else:
        cats = list(pd.unique(values.dropna()))
        try:
            cats = sorted(cats, key=lambda c: (float(c), str(c)))
        except (TypeError, ValueError):
            cats = sorted(cats, key=str)
    return [c for c in cats if not is_unassigned(c)] + [c for c in cats if is_unassigned(c)]
