"""Matching the user's label names to a reference's: by name, then by the cells themselves.

Reference and data often name the same type differently (``"B"`` vs ``"B cells"``,
``"CD14.Mono.1"`` vs ``"cd14 mono 1"``). :func:`match_names` pairs names that agree up to
case and punctuation; :func:`suggest_label_map` completes the map from the confusion of the
transferred labels with the user's labels: each reference label goes to the user's label
most of its cells carry (many reference labels may go to one user label).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..palette import is_missing, normalize_name
from .vote import UNASSIGNED

__all__ = ["match_names", "suggest_label_map"]


def match_names(reference_labels: Iterable[Any], user_labels: Iterable[Any]) -> dict[str, str]:
    """Pair reference labels with user labels whose names agree up to case and punctuation.

    Parameters
    ----------
    reference_labels
        Reference label names.
    user_labels
        The user's label names.

    Returns
    -------
    dict
        ``{reference label: user label}`` for every match (exact matches win).
    """
    users = [str(u) for u in dict.fromkeys(user_labels) if not is_missing(u)]
    by_norm: dict[str, str] = {}
    for user in users:
        by_norm.setdefault(normalize_name(user), user)
    exact = set(users)
    out = {}
    for ref in dict.fromkeys(str(r) for r in reference_labels):
        if ref in exact:
            out[ref] = ref
        elif normalize_name(ref) in by_norm:
            out[ref] = by_norm[normalize_name(ref)]
    return out


def suggest_label_map(truth: Any, predicted: Any, *, min_cells: int = 1) -> dict[str, str]:
    """Suggest a reference -> user label map: matching names, then each label's majority.

    Parameters
    ----------
    truth
        The user's label per cell (NaN: not used).
    predicted
        The transferred reference label per cell (``Unassigned`` is not mapped).
    min_cells
        A reference label needs at least this many cells with a truth label to be
        mapped by the majority; otherwise it keeps its name.

    Returns
    -------
    dict
        ``{reference label: user label}`` for every predicted label: a name match where
        one exists, else the user's label most of its cells carry (ties: the first in
        sorted order), else the reference name itself.
    """
    truth = pd.Series(np.asarray(truth, dtype=object))
    predicted = pd.Series(np.asarray(predicted, dtype=object)).astype(str)
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truth labels but {len(predicted)} predictions.")
    keep = truth.notna().to_numpy()
    user = truth[keep].astype(str)
    names = sorted(set(predicted) - {UNASSIGNED})
    mapping = match_names(names, user.unique())
    rest = [n for n in names if n not in mapping]
    if rest and keep.any():
        table = pd.crosstab(predicted[keep].to_numpy(), user.to_numpy())
        table = table.reindex(columns=sorted(table.columns))
        for name in rest:
            if name in table.index and table.loc[name].sum() >= min_cells:
                mapping[name] = str(table.loc[name].idxmax())
    for name in names:
        mapping.setdefault(name, name)
    return {name: mapping[name] for name in names}
