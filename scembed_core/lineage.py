"""Lineages: a coarse level above the cell types (T, NK, B, myeloid, erythroid, progenitor).

A reference bundle may carry a label hierarchy in ``manifest.json`` (key
``label_hierarchy``: ``{label_key: {label: lineage}}``; the built-in bundle does, written by
``scripts/add_label_colors.py``). A bundle without one gets each label's lineage guessed
from its name (:func:`guess_lineage`), labels it cannot place stay without a lineage.
:func:`lineage_report` scores transferred labels at the lineage level, the user's truth
names placed through the same rules (and through the label map when names differ).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .labels.vote import UNASSIGNED

__all__ = [
    "LINEAGES",
    "OTHER",
    "BUILTIN_HIERARCHY",
    "guess_lineage",
    "reference_lineages",
    "to_lineages",
    "lineage_report",
    "reference_label_colors",
]

#: The lineages, in display order.
LINEAGES = ("T", "NK", "B", "myeloid", "dendritic", "erythroid", "progenitor")
#: Lineage of a label that none of the rules place.
OTHER = "other"

#: The built-in reference's hierarchy (Granja et al. 2019 bone-marrow types).
BUILTIN_HIERARCHY: dict[str, str] = {
    "CD4.N1": "T",
    "CD4.N2": "T",
    "CD4.M": "T",
    "CD8.N": "T",
    "CD8.CM": "T",
    "CD8.EM": "T",
    "NK": "NK",
    "B": "B",
    "Pre.B": "B",
    "CD14.Mono.1": "myeloid",
    "CD14.Mono.2": "myeloid",
    "GMP": "progenitor",
    "CMP.LMPP": "progenitor",
    "CLP.1": "progenitor",
    "CLP.2": "progenitor",
    "HSC": "progenitor",
}

# Token rules, tried in this order (the first lineage with a matching token wins).
_RULES: tuple[tuple[str, frozenset[str]], ...] = (
    ("progenitor", frozenset({"hsc", "hspc", "mpp", "lmpp", "cmp", "gmp", "clp", "mep",
                              "progenitor", "progenitors", "stem", "cd34"})),
    ("erythroid", frozenset({"ery", "eryth", "erythroid", "erythrocyte", "erythrocytes",
                             "rbc", "erythroblast", "erythroblasts"})),
    ("NK", frozenset({"nk", "natural"})),
    ("dendritic", frozenset({"dc", "pdc", "cdc", "cdc1", "cdc2", "dendritic", "pdcs", "dcs"})),
    ("myeloid", frozenset({"mono", "monocyte", "monocytes", "cd14", "cd16", "macrophage",
                           "macrophages", "neutrophil", "neutrophils", "granulocyte", "baso",
                           "basophil", "eosinophil", "mast", "myeloid", "mo"})),
    ("B", frozenset({"b", "bcell", "bcells", "plasma", "plasmablast", "preb", "prob"})),
    ("T", frozenset({"t", "tcell", "tcells", "cd4", "cd8", "cd3", "treg", "tregs", "mait",
                     "gdt", "th", "tfh", "cd4t", "cd8t"})),
)  # fmt: skip
_TOKEN = re.compile(r"[a-z0-9]+")


def guess_lineage(name: object) -> str | None:
    """Guess the lineage of a cell-type name from its words (None: no rule places it).

    Parameters
    ----------
    name
        A cell-type name such as ``"CD14+ Monocytes"``, ``"B cells"`` or ``"CD8.EM"``.

    Returns
    -------
    str or None
        One of :data:`LINEAGES`, or None when no rule places the name.
    """
    text = str(name)
    if text in BUILTIN_HIERARCHY:
        return BUILTIN_HIERARCHY[text]
    stripped = re.sub(r"^\d+_", "", text)  # Granja's "11_CD14.Mono.1"
    if stripped in BUILTIN_HIERARCHY:
        return BUILTIN_HIERARCHY[stripped]
    lower = stripped.lower()
    tokens = set(_TOKEN.findall(lower))
    tokens |= {t.rstrip("s") for t in tokens}
    tokens |= {re.sub(r"\d+$", "", t) for t in tokens}
    joined = re.sub(r"[^a-z0-9]", "", lower)
    for lineage, words in _RULES:
        if tokens & words:
            return lineage
    for prefix, lineage in (("erythro", "erythroid"), ("mono", "myeloid"), ("tcell", "T")):
        if joined.startswith(prefix):
            return lineage
    return None


def reference_lineages(
    reference: Any, label_key: str | None = None, *, stored: bool = True
) -> dict[str, str]:
    """Label -> lineage for a reference's labels: the bundle's hierarchy, else guessed.

    Parameters
    ----------
    reference
        A :class:`~scembed_core.reference.Reference`, or its compact view
        (:class:`~scembed_core.compact.ReferenceSummary`: labels from its categories).
    label_key
        Reference obs column; None for its default.
    stored
        Use the bundle's stored hierarchy when it has one (False: always guess).

    Returns
    -------
    dict
        ``{label: lineage}`` for the labels that have one (others are left out).
    """
    key = label_key or getattr(reference, "default_label_key", None)
    if key is None:
        return {}
    kept = (reference.manifest.get("label_hierarchy") or {}).get(key) if stored else None
    if kept:
        return {str(k): str(v) for k, v in kept.items()}
    labels = _label_names(reference, key)
    guessed = {str(label): guess_lineage(label) for label in labels}
    return {k: v for k, v in guessed.items() if v is not None}


def _label_names(reference: Any, key: str) -> list[str]:
    """Return the distinct labels of ``key`` (the cells, else a compact view's categories)."""
    cells = getattr(reference, "cells", None)
    if cells is not None:
        return [str(v) for v in cells.obs[key].astype(str).unique()]
    categories = getattr(reference, "categories", None) or {}
    return [str(v) for v in categories.get(key, [])]


def to_lineages(
    labels: Any,
    lineages: Mapping[str, str],
    *,
    label_map: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Each label's lineage: from ``lineages``, through ``label_map``, or by its name.

    Parameters
    ----------
    labels
        Labels per cell (reference names or the user's names); NaN stays NaN.
    lineages
        Reference label -> lineage (:func:`reference_lineages`).
    label_map
        Reference label -> the user's name: a user's name takes the lineage most of the
        reference labels mapped to it have.

    Returns
    -------
    numpy.ndarray
        Object array of lineages; ``Unassigned`` stays ``Unassigned``; a label no rule
        places becomes :data:`OTHER`.
    """
    from .palette import normalize_name

    by_norm = {normalize_name(k): v for k, v in lineages.items()}
    votes: dict[str, Counter] = {}
    for ref, user in (label_map or {}).items():
        if user is not None and str(ref) in lineages:
            votes.setdefault(normalize_name(user), Counter())[lineages[str(ref)]] += 1
    series = pd.Series(np.asarray(labels, dtype=object))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    placed = []
    for value in uniques:
        name = str(value)
        key = normalize_name(name)
        if name == UNASSIGNED:
            placed.append(UNASSIGNED)
        elif key in by_norm:
            placed.append(by_norm[key])
        elif key in votes:
            placed.append(votes[key].most_common(1)[0][0])
        else:
            placed.append(guess_lineage(name) or OTHER)
    out = np.asarray(placed + [np.nan], dtype=object)[codes]  # code -1 (NaN) -> the last
    return out


def lineage_report(
    truth: Any,
    predicted: Any,
    lineages: Mapping[str, str],
    *,
    label_map: Mapping[str, str] | None = None,
) -> Any:
    """Accuracy, F1 and confusion of transferred labels at the lineage level.

    Parameters
    ----------
    truth
        The user's labels per cell (NaN: not scored).
    predicted
        Transferred reference labels per cell (``Unassigned`` counts as wrong).
    lineages
        Reference label -> lineage (:func:`reference_lineages`).
    label_map
        Reference label -> the user's name, used to place the user's names.

    Returns
    -------
    ClassificationReport
        :class:`~scembed_core.evaluate.ClassificationReport` over lineages.
    """
    from .evaluate import classification_report

    true_lineage = to_lineages(truth, lineages, label_map=label_map)
    predicted_lineage = to_lineages(predicted, lineages)
    return classification_report(true_lineage, predicted_lineage)


def reference_label_colors(reference: Any, label_key: str | None = None) -> dict[str, str]:
    """Return a reference's label -> colour map: the bundle's own, else computed the same way.

    Parameters
    ----------
    reference
        A :class:`~scembed_core.reference.Reference` (or anything with ``manifest``,
        ``cells``, ``default_label_key``).
    label_key
        Reference obs column; None for its default label column.

    Returns
    -------
    dict
        ``{label: "#RRGGBB"}`` for every label of that column (empty without labels).
    """
    from .palette import assign_colors

    key = label_key or getattr(reference, "default_label_key", None)
    if key is None:
        return {}
    stored = (reference.manifest.get("label_colors") or {}).get(key)
    if stored:
        return {str(k): str(v) for k, v in stored.items()}

    def compute() -> dict[str, str]:
        labels = _label_names(reference, key)
        return assign_colors(labels, reference_lineages(reference, key))

    memo = getattr(reference, "memoized", None)
    return dict(memo(("label_colors", key), compute) if memo else compute())
