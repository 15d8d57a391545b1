"""One label, one colour: the colour-blind-safe palette and a reference's label colours.

Pure data and functions (no plotting library). A reference bundle carries its label ->
colour map in ``manifest.json`` (key ``label_colors``: ``{label_key: {label: "#rrggbb"}}``,
added to the built-in bundle by ``scripts/add_label_colors.py``); a bundle without it gets
the same map computed on load, deterministically from its
labels and their lineages (:func:`scembed_core.lineage.reference_label_colors`).

Labels of one lineage get related hues (shades of one Okabe-Ito colour, alternating in
lightness so neighbouring types stay apart); labels without a lineage get the qualitative
colours of Okabe & Ito and Paul Tol (bright, muted, light), all chosen to stay apart for
the common colour-vision deficiencies; more labels than :data:`QUALITATIVE` holds get
lighter and darker variants. ``Unassigned``, ``Unknown`` and other missing values are always
:data:`GREY`.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "GREY",
    "LINEAGE_COLORS",
    "QUALITATIVE",
    "MISSING_NAMES",
    "is_missing",
    "normalize_name",
    "LINEAGE_SHADES",
    "shades",
    "assign_colors",
    "label_colors",
]

#: Colour of Unassigned / Unknown / missing labels, in every chart.
GREY = "#8C8C8C"
#: Names drawn grey (compared after :func:`normalize_name`).
MISSING_NAMES = frozenset(
    {"unassigned", "unknown", "unmapped", "nan", "na", "none", "", "unlabelled", "unlabeled"}
)
#: Base colour of each lineage (Okabe & Ito 2008, colour-blind safe); types get its shades.
LINEAGE_COLORS: dict[str, str] = {
    "T": "#0072B2",  # blue
    "NK": "#009E73",  # bluish green
    "B": "#E69F00",  # orange
    "myeloid": "#D55E00",  # vermillion
    "erythroid": "#CC79A7",  # reddish purple
    "progenitor": "#7A6A00",  # dark olive (Okabe-Ito yellow darkened to be seen on white)
    "dendritic": "#56B4E9",  # sky blue
}
#: Qualitative colours for labels without a lineage (Okabe-Ito, Tol bright, muted, light).
QUALITATIVE: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#B8A800",
    "#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377",
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677",
    "#882255", "#AA4499", "#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF",
    "#44BB99", "#AAAA00", "#6E3B00", "#004D40", "#5A0F3C", "#003366", "#B35900",
)  # fmt: skip

_PUNCTUATION = re.compile(r"[\s_\-.,:;/+()\[\]]+")


def normalize_name(name: object) -> str:
    """Reduce a label name to lower-case letters and digits (``"CD14+ Mono"`` -> ``cd14mono``).

    Parameters
    ----------
    name
        Any label value.

    Returns
    -------
    str
        Lower case, with whitespace and punctuation removed.
    """
    return _PUNCTUATION.sub("", str(name).strip().lower())


def is_missing(name: object) -> bool:
    """Whether ``name`` stands for no label (Unassigned, Unknown, NaN...): always grey.

    Parameters
    ----------
    name
        A label value.

    Returns
    -------
    bool
        True for the names in :data:`MISSING_NAMES` (up to case and punctuation) and None.
    """
    return name is None or normalize_name(name) in MISSING_NAMES


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02X}" for c in rgb)


def _rgb(color: str) -> tuple[float, float, float]:
    color = color.lstrip("#")
    return tuple(int(color[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


#: Hand-picked shades per lineage, alternating dark and light so neighbours stay apart.
LINEAGE_SHADES: dict[str, tuple[str, ...]] = {
    "T": ("#0072B2", "#7FB8E6", "#1B3A6B", "#3E9BD6", "#A9CFEF", "#2B5C99", "#5A7FB8", "#0B4F7C"),
    "NK": ("#009E73", "#7ACCB0", "#00573F", "#3DB892"),
    "B": ("#E69F00", "#F7CD6B", "#9A6A00", "#C08A2E"),
    "myeloid": ("#D55E00", "#F29A6B", "#8C3B00", "#B8403A", "#F0B89A", "#E07B39"),
    "dendritic": ("#56B4E9", "#2C7FA8", "#A3D6F3"),
    "erythroid": ("#CC79A7", "#8E3A6D", "#E9B3D1", "#B0508A"),
    "progenitor": ("#7A6A00", "#BDB24A", "#4D4A12", "#A39A2A", "#D6CE85", "#6B5E2E"),
}  # fmt: skip


def shades(base: str, n: int) -> list[str]:
    """``n`` related colours of ``base``'s lineage: the hand-picked ones, then generated.

    Parameters
    ----------
    base
        ``#rrggbb`` colour (a lineage's from :data:`LINEAGE_COLORS`, or any other).
    n
        How many shades.

    Returns
    -------
    list of str
        ``n`` distinct ``#RRGGBB`` colours; the first is ``base`` itself.
    """
    if n <= 0:
        return []
    picked = next((list(v) for v in LINEAGE_SHADES.values() if v[0] == base.upper()), [])
    out = [_hex(_rgb(base))] + [c for c in picked[1:]]
    hue, _, sat = colorsys.rgb_to_hls(*_rgb(base))
    i = 0
    while len(out) < n:  # beyond the picked ones: lightness and a small hue step
        level = 0.22 + 0.5 * ((i * 0.618) % 1.0)
        shift = 0.06 * (((i * 0.382) % 1.0) - 0.5)
        color = _hex(colorsys.hls_to_rgb((hue + shift) % 1.0, level, min(0.9, sat)))
        if color not in out:
            out.append(color)
        i += 1
    return out[:n]


def _natural_key(name: str) -> tuple:
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def _qualitative(i: int) -> str:
    """Return the ``i``-th qualitative colour; beyond the list, lighter then darker variants."""
    base = QUALITATIVE[i % len(QUALITATIVE)]
    round_ = i // len(QUALITATIVE)
    if round_ == 0:
        return base
    hue, light, sat = colorsys.rgb_to_hls(*_rgb(base))
    step = 0.12 * ((round_ + 1) // 2) * (1 if round_ % 2 else -1)
    return _hex(colorsys.hls_to_rgb(hue, min(0.88, max(0.15, light + step)), sat))


def assign_colors(
    labels: Iterable[Any], lineages: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Give each label a fixed colour: a shade of its lineage's colour, else a qualitative one.

    Parameters
    ----------
    labels
        Label names (order does not matter: they are sorted naturally first).
    lineages
        Label -> lineage name; lineages in :data:`LINEAGE_COLORS` give related hues.

    Returns
    -------
    dict
        ``{str(label): "#RRGGBB"}``; missing-like labels (:func:`is_missing`) are :data:`GREY`.
    """
    names = sorted({str(label) for label in labels}, key=_natural_key)
    lineages = dict(lineages or {})
    colors: dict[str, str] = {}
    by_lineage: dict[str, list[str]] = {}
    others: list[str] = []
    for name in names:
        if is_missing(name):
            colors[name] = GREY
        elif lineages.get(name) in LINEAGE_COLORS:
            by_lineage.setdefault(lineages[name], []).append(name)
        else:
            others.append(name)
    for lineage, members in by_lineage.items():
        colors.update(zip(members, shades(LINEAGE_COLORS[lineage], len(members)), strict=True))
    used = set(colors.values())
    i = 0
    for name in others:
        while _qualitative(i) in used and i < 4 * len(QUALITATIVE):
            i += 1
        colors[name] = _qualitative(i)
        used.add(colors[name])
        i += 1
    return colors


def label_colors(
    labels: Iterable[Any],
    base: Mapping[str, str] | None = None,
    *,
    aliases: Mapping[str, str] | None = None,
) -> dict[Any, str]:
    """Colour each label of one chart as the reference's map does.

    Parameters
    ----------
    labels
        The chart's labels (any hashable values; the keys of the result).
    base
        The reference's label -> colour map (:func:`~scembed_core.lineage.reference_label_colors`); None gives
        every label a palette colour in natural order.
    aliases
        Label of ``base`` -> another name for it (the Annotation page's label map, reference
        label -> the user's name), so that a truth map shows the colours of the reference
        labels its names stand for (several reference labels: the first, naturally sorted).

    Returns
    -------
    dict
        ``{label: "#RRGGBB"}``: a label of ``base`` keeps its colour, also when it matches up
        to case and punctuation or through ``aliases``; Unassigned/Unknown are :data:`GREY`;
        any other label gets a palette colour not used by ``base``.
    """
    labels = list(dict.fromkeys(labels))
    base = dict(base or {})
    by_norm = {normalize_name(k): v for k, v in base.items()}
    alias_norm: dict[str, str] = {}
    for ref, other in sorted((aliases or {}).items(), key=lambda kv: _natural_key(str(kv[0]))):
        if other is not None and normalize_name(ref) in by_norm:
            alias_norm.setdefault(normalize_name(other), by_norm[normalize_name(ref)])
    out: dict[Any, str] = {}
    rest = []
    for label in labels:
        key = normalize_name(label)
        if is_missing(label):
            out[label] = GREY
        elif str(label) in base:
            out[label] = base[str(label)]
        elif key in by_norm:
            out[label] = by_norm[key]
        elif alias_norm.get(key):
            out[label] = alias_norm[key]
        else:
            rest.append(label)
    used = set(base.values()) | set(out.values())
    i = 0
    for label in sorted(rest, key=lambda v: _natural_key(str(v))):
        while _qualitative(i) in used and i < 4 * len(QUALITATIVE):
            i += 1
        out[label] = _qualitative(i)
        used.add(out[label])
        i += 1
    return out
