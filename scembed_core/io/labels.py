"""Which ``obs`` column of a dataset holds its cell types (the truth to score against)."""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["guess_label_key", "MIN_CATEGORIES", "MAX_CATEGORIES"]

MIN_CATEGORIES = 2
MAX_CATEGORIES = 200
# words of a label column's name, best first; and words that mark cluster ids or batches
_STRONG = ("celltype", "cell_type", "cell_types", "celltypes", "cell_label", "cell_labels")
_GOOD = ("annotation", "annotations", "label", "labels", "cell_identity", "identity")
_WEAK = ("type", "types", "classification", "class", "lineage", "population", "subtype")
_NEVER = re.compile(
    r"clust|leiden|louvain|seurat|kmeans|batch|sample|donor|barcode|group|replicate|"
    r"library|lane|orig|phase|scembed",
    re.IGNORECASE,
)


def _tokens(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", spaced) if w]
    return (
        set(words) | {"_".join(words[i : i + 2]) for i in range(len(words) - 1)} | {"".join(words)}
    )


def _score(name: str) -> int:
    tokens = _tokens(name)
    if tokens & set(_STRONG):
        return 3
    if tokens & set(_GOOD):
        return 2
    if tokens & set(_WEAK):
        return 1
    return 0


def guess_label_key(adata: object) -> str | None:
    """Guess the ``obs`` column that holds the dataset's cell types (None: no such column).

    A candidate is categorical or text, has 2-200 distinct values, and its name reads like
    a cell type, label or annotation (``cell_type``, ``celltype``, ``labels``,
    ``annotation``, ``bio_classification``...). Cluster ids and batches never qualify
    (``initialClusters``, ``leiden``, ``louvain``, ``seurat_clusters``, ``sample``...),
    nor do columns with one distinct value per cell.

    Parameters
    ----------
    adata
        An :class:`anndata.AnnData` (only ``obs`` is read), or a :class:`pandas.DataFrame`.

    Returns
    -------
    str or None
        The best column (strongest name, then fewest missing values, then its position),
        or None when no column qualifies.
    """
    obs = adata if isinstance(adata, pd.DataFrame) else adata.obs
    n = len(obs)
    best: tuple | None = None
    for position, column in enumerate(obs.columns):
        name = str(column)
        if _NEVER.search(name):
            continue
        values = obs[column]
        if not (
            isinstance(values.dtype, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(values)
            or pd.api.types.is_string_dtype(values)
        ):
            continue
        score = _score(name)
        if score == 0:
            continue
        n_unique = values.nunique(dropna=True)
        if not MIN_CATEGORIES <= n_unique <= MAX_CATEGORIES or (n > 2 and n_unique >= n):
            continue
        rank = (score, -int(values.isna().sum()), -position)
        if best is None or rank > best[0]:
            best = (rank, name)
    return None if best is None else best[1]
