"""A second opinion on every cluster's label, from accessibility alone (no embedding).

At reference build each cell type's *profile* is stored: the fraction of its cells open at
every universe region (types x regions, float16 in ``type_profiles.npy``; 16 types x 10k
regions is 320 kB). For a query cluster the same fractions are computed on the query's
peaks mapped onto the universe. Both are turned into *specificity* profiles (a type's
fraction minus the mean over types; a cluster's minus the mean over all query cells), and
the score of a (cluster, type) pair is their Pearson correlation over the universe regions
the query's peaks cover. The best-matching type is the second opinion;
``markers_agree`` says whether it equals, or shares a lineage with, the transferred label.

Lineages come from the bundle manifest (``lineages``: type -> lineage); without one a
type's lineage is its name without a trailing ``.N``/``_N`` index (``CD14.Mono.2`` ->
``CD14.Mono``). Old bundles: the profiles are computed on load when the reference cells
carry a cells x universe matrix, else the second opinion is unavailable (None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..regions import GenomicRegions, binary_signal

if TYPE_CHECKING:
    import anndata as ad

    from ..reference import Reference

__all__ = [
    "PROFILE_FILE",
    "UNS_KEY",
    "TypeProfiles",
    "compute_type_profiles",
    "save_type_profiles",
    "type_profiles",
    "lineage_of",
    "score_clusters",
    "query_cluster_scores",
    "with_second_opinion",
    "cluster_second_opinion",
]

PROFILE_FILE = "type_profiles.npy"
#: ``reference.cells.uns`` key of the profiles of a reference built in this process.
UNS_KEY = "scembed_type_profiles"
_INDEX = re.compile(r"[._-]?\d+$")
#: Why a reference has no second opinion.
UNAVAILABLE = (
    "unavailable: the reference stores no cell-type profiles and its cells carry no accessibility"
)


@dataclass(frozen=True)
class TypeProfiles:
    """Open fraction of each reference cell type at every universe region.

    Parameters
    ----------
    label_key
        The reference label column the types come from.
    classes
        Type names, one per row of ``fractions``.
    fractions
        Types x universe regions, in ``[0, 1]``.
    n_cells
        Reference cells per type.
    """

    label_key: str
    classes: list[str]
    fractions: np.ndarray
    n_cells: np.ndarray

    def manifest_entry(self) -> dict:
        """Describe the profiles for the bundle manifest.

        Returns
        -------
        dict
            ``label_key``, ``classes``, ``n_cells`` and ``file``.
        """
        return {
            "label_key": self.label_key,
            "classes": list(self.classes),
            "n_cells": [int(n) for n in self.n_cells],
            "file": PROFILE_FILE,
        }


def compute_type_profiles(
    cells_by_universe: sp.spmatrix | np.ndarray, labels: np.ndarray, label_key: str
) -> TypeProfiles:
    """Compute each type's open fraction per universe region (one sparse product).

    Parameters
    ----------
    cells_by_universe
        Reference cells x universe regions (binarised here).
    labels
        Type of each cell.
    label_key
        Name of the label column (recorded).

    Returns
    -------
    TypeProfiles
        Types sorted by name.
    """
    signal = binary_signal(cells_by_universe)
    classes, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    onehot = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (codes, np.arange(len(codes)))),
        shape=(len(classes), len(codes)),
    )
    counts = np.bincount(codes, minlength=len(classes))
    fractions = np.asarray((onehot @ signal).todense()) / counts[:, None]
    return TypeProfiles(label_key, [str(c) for c in classes], fractions.astype(np.float32), counts)


def save_type_profiles(profiles: TypeProfiles, folder: str | Path) -> list[str]:
    """Write ``type_profiles.npy`` (float16, no pickle) into a bundle folder.

    Parameters
    ----------
    profiles
        The profiles.
    folder
        The bundle folder.

    Returns
    -------
    list of str
        The file names written.
    """
    np.save(Path(folder) / PROFILE_FILE, profiles.fractions.astype(np.float16), allow_pickle=False)
    return [PROFILE_FILE]


def _from_bundle(reference: Reference) -> TypeProfiles | None:
    entry = reference.manifest.get("type_profiles")
    if not entry or reference.path is None:
        return None
    path = Path(reference.path) / entry.get("file", PROFILE_FILE)
    if not path.is_file() or entry.get("file", PROFILE_FILE) not in reference.manifest.get(
        "files", {}
    ):
        return None
    fractions = np.load(path, allow_pickle=False).astype(np.float32)
    if fractions.shape != (len(entry["classes"]), reference.n_regions):
        return None
    return TypeProfiles(
        entry["label_key"], list(entry["classes"]), fractions, np.asarray(entry["n_cells"])
    )


def _compute(reference: Reference) -> TypeProfiles | None:
    cells = reference.cells
    if cells is None:
        return None
    stored = cells.uns.get(UNS_KEY)
    if isinstance(stored, TypeProfiles):
        return stored
    found = _from_bundle(reference)
    if found is not None:
        return found
    key = reference.default_label_key
    if key is None or cells.X is None or cells.n_vars != reference.n_regions:
        return None  # the cells carry no accessibility: unavailable
    return compute_type_profiles(cells.X, cells.obs[key].to_numpy(), key)


def type_profiles(reference: Reference) -> TypeProfiles | None:
    """Return the reference's type profiles (stored, built here, or computed once on load).

    Parameters
    ----------
    reference
        A loaded or freshly built reference.

    Returns
    -------
    TypeProfiles or None
        None when the reference has neither stored profiles nor cells with accessibility.
    """
    return reference.memoized(("type_profiles",), lambda: _compute(reference))


def lineage_of(label: str, lineages: dict[str, str] | None = None) -> str:
    """Return a type's lineage: the manifest's, else its name without a trailing index.

    Parameters
    ----------
    label
        A type name.
    lineages
        Type -> lineage (the bundle manifest's ``lineages``).

    Returns
    -------
    str
        The lineage.
    """
    if lineages and label in lineages:
        return str(lineages[label])
    return _INDEX.sub("", str(label)) or str(label)


def score_clusters(
    cluster_fractions: np.ndarray, query_mean: np.ndarray, profiles: TypeProfiles,
    covered: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Correlate each cluster's specificity profile with each type's.

    Parameters
    ----------
    cluster_fractions
        Clusters x universe open fractions of the query.
    query_mean
        Open fraction of all query cells per universe region.
    profiles
        The reference's type profiles.
    covered
        Universe regions the query's peaks cover (boolean).

    Returns
    -------
    numpy.ndarray
        Clusters x types Pearson correlations (0 where a profile is flat).
    """
    types = profiles.fractions[:, covered].astype(np.float64)
    t = types - types.mean(axis=0)
    c = cluster_fractions[:, covered] - query_mean[covered]
    t = t - t.mean(axis=1, keepdims=True)
    c = c - c.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(c, axis=1)[:, None] * np.linalg.norm(t, axis=1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num((c @ t.T) / norm)


def query_cluster_scores(
    matrix: sp.spmatrix | np.ndarray,
    peaks: GenomicRegions,
    clusters: np.ndarray,
    reference: Reference,
) -> pd.DataFrame | None:
    """Score every query cluster against every reference type (see the module docstring).

    Parameters
    ----------
    matrix
        Query cells x peaks (binarised here).
    peaks
        The query's peaks, on the reference's build.
    clusters
        Cluster of each cell.
    reference
        The reference.

    Returns
    -------
    pandas.DataFrame or None
        Clusters x types scores, or None when the reference has no type profiles.
    """
    from ..regions import cells_by_universe, map_peaks_to_universe

    profiles = type_profiles(reference)
    if profiles is None:
        return None
    mapping = map_peaks_to_universe(peaks, reference.model.universe)
    universe = cells_by_universe(matrix, mapping)
    covered = np.asarray(mapping.matrix.sum(axis=0)).ravel() > 0
    names, codes = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    onehot = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (codes, np.arange(len(codes)))),
        shape=(len(names), len(codes)),
    )
    sizes = np.bincount(codes, minlength=len(names))[:, None]
    fractions = np.asarray((onehot @ universe).todense()) / sizes
    mean = np.asarray(universe.mean(axis=0)).ravel()
    scores = score_clusters(fractions, mean, profiles, covered)
    frame = pd.DataFrame(scores, index=names, columns=profiles.classes)
    frame.attrs["n_regions_compared"] = int(covered.sum())
    return frame


def with_second_opinion(
    table: pd.DataFrame, scores: pd.DataFrame, lineages: dict[str, str] | None = None
) -> pd.DataFrame:
    """Add ``second_opinion``, ``second_opinion_score`` and ``markers_agree`` to a table.

    Parameters
    ----------
    table
        A cluster table with ``cluster`` and ``label`` columns.
    scores
        Clusters x types scores (:func:`query_cluster_scores`).
    lineages
        Type -> lineage (the bundle manifest's ``lineages``).

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with the three columns.
    """
    out = table.copy()
    key = out["cluster"].astype(str)
    out["second_opinion"] = key.map(scores.idxmax(axis=1)).fillna("").to_numpy()
    out["second_opinion_score"] = key.map(scores.max(axis=1)).to_numpy(dtype=float)
    out["markers_agree"] = [
        bool(b) and (b == lab or lineage_of(b, lineages) == lineage_of(lab, lineages))
        for b, lab in zip(out["second_opinion"], out["label"].astype(str), strict=True)
    ]
    return out


def cluster_second_opinion(
    adata: ad.AnnData, reference: Reference, *, cluster_key: str, label_key: str
) -> pd.DataFrame | None:
    """Add ``second_opinion``, ``second_opinion_score`` and ``markers_agree`` to the table.

    The cluster table is the one :func:`scembed_core.tl.annotate_clusters` stored in
    ``uns["scembed"]["<cluster_key>_label"]["cluster_table"]``.

    Parameters
    ----------
    adata
        A query with clusters, labels, the cluster table and its peaks (``X``).
    reference
        The reference.
    cluster_key, label_key
        ``obs`` columns of the clusters and labels.

    Returns
    -------
    pandas.DataFrame or None
        Clusters x types scores (also in ``uns["scembed"]["second_opinion"]``), or None
        when the reference has no profiles (then ``uns["scembed"]["second_opinion"]``
        says ``unavailable`` and the table is unchanged).

    Raises
    ------
    ParameterError
        If the clusters or the cluster table are missing.
    """
    from .. import results
    from ..errors import ParameterError
    from ..markers import regions_of

    table_key = f"{cluster_key}_label"
    table = results.cluster_table_of(adata, table_key)
    if cluster_key not in adata.obs or table is None:
        raise ParameterError(
            "No clusters or cluster table: run scembed_core.tl.cluster and "
            "tl.annotate_clusters first."
        )
    scores = query_cluster_scores(
        adata.X, regions_of(adata), adata.obs[cluster_key].to_numpy(), reference
    )
    if scores is None:
        results.record(adata, "second_opinion", {"status": "unavailable"})["status"] = UNAVAILABLE
        return None
    lineages = reference.manifest.get("lineages") or {}
    adata.uns["scembed"][table_key]["cluster_table"] = with_second_opinion(table, scores, lineages)
    entry = results.record(
        adata,
        "second_opinion",
        {
            "cluster_key": cluster_key,
            "label_key": label_key,
            "profile_label_key": type_profiles(reference).label_key,
            "n_regions_compared": scores.attrs["n_regions_compared"],
            "score": "Pearson correlation of specificity profiles",
        },  # fmt: skip
    )
    entry["scores"] = scores
    return scores
