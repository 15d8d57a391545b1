"""Which ``obs`` column holds the cell-type labels: one guess, used by every page and command."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["guess_label_key"]

MIN_CATEGORIES = 2
MAX_CATEGORIES = 200
#: Names that say "cell-type labels", best first (matched on the name in lower case with
#: ``_``, ``-``, ``.`` and spaces removed).
LABEL_NAMES = (
    "celltype",
    "celltypes",
    "celltypefine",
    "celltypecoarse",
    "celltypeannotation",
    "cellannotation",
    "annotation",
    "annotations",
    "label",
    "labels",
    "celllabel",
    "biolabel",
    "bioclassification",
    "classification",
    "predictedcelltype",
)
#: Words in a name that mark a cell-type column even when it is not one of the above.
LABEL_WORDS = ("celltype", "annotation", "label", "classification", "lineage", "type")
#: Words that mark cluster ids, samples, batches and QC: never labels.
NOT_LABEL = re.compile(
    r"cluster|louvain|leiden|seurat|snn|kmeans|batch|sample|donor|group|barcode|"
    r"replicate|library|lane|phase|plate|well|orig|ident|^n(peaks|counts|genes|fragments|reads)|"
    r"total|count|frip|tss|qc|score"
)


def _normalised(name: object) -> str:
    return re.sub(r"[\s_\-.]+", "", str(name).lower())


def _categories(values: pd.Series) -> int | None:
    """Distinct non-missing values of a text or categorical column; None otherwise."""
    if not (
        isinstance(values.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(values)
        or pd.api.types.is_string_dtype(values)
        or pd.api.types.is_bool_dtype(values)
    ):
        return None  # numbers (cluster ids stored as integers included) are not labels
    return int(values.nunique(dropna=True))


def guess_label_key(adata: ad.AnnData) -> str | None:
    """Guess the ``obs`` column that holds cell-type labels (None if none qualifies).

    A candidate is categorical or text with 2-200 distinct values and fewer distinct values
    than half the cells (ids and barcodes are out). Cluster ids (``initialClusters``,
    ``leiden``, ``seurat_clusters``), samples, batches and QC columns are never chosen, nor
    a column whose values are all numbers. Among the rest, a name such as ``cell_type``,
    ``annotation`` or ``label`` wins (in the order of :data:`LABEL_NAMES`), then a name
    containing such a word, then, only when it is the single candidate left, any other.

    Parameters
    ----------
    adata
        The dataset (only ``obs`` is read).

    Returns
    -------
    str or None
        The column name, or None when no column qualifies.
    """
    obs = adata.obs
    n_cells = len(obs)
    candidates: list[str] = []
    for name in obs.columns:
        key = _normalised(name)
        if NOT_LABEL.search(key):
            continue
        values = obs[name]
        n = _categories(values)
        if n is None or not MIN_CATEGORIES <= n <= MAX_CATEGORIES:
            continue
        if n_cells >= 4 and n > max(MIN_CATEGORIES, n_cells // 2):
            continue
        text = values.dropna().astype(str)
        if text.str.fullmatch(r"\s*-?\d+(\.\d+)?\s*").all():
            continue  # "0", "1", ... cluster numbers stored as text
        candidates.append(str(name))
    by_name = {_normalised(c): c for c in candidates}
    for known in LABEL_NAMES:
        if known in by_name:
            return by_name[known]
    worded = [c for c in candidates if any(w in _normalised(c) for w in LABEL_WORDS)]
    if worded:
        return worded[0]
    return candidates[0] if len(candidates) == 1 else None
