"""Key names of the scEmbed results in an AnnData (documented in :mod:`scembed_core.results`)."""

from __future__ import annotations

UNS_KEY = "scembed"
EMBEDDING = "X_scembed"
ANALYSIS = "X_scembed_whitened"
UMAP = "X_scembed_umap"
PROBABILITIES = "scembed_label_probabilities"
CLUSTER = "scembed_cluster"
LABEL = "scembed_label"

PROJECT = "project"
CLUSTER_LABEL = f"{CLUSTER}_label"

#: Keys of ``uns["scembed"]["params"]`` (the names of the command line and ``run.json``)
#: and the (record, parameter) each is read from: the records of the default keys.
RUN_PARAMS: dict[str, tuple[str, str]] = {
    "reference": (PROJECT, "reference"),
    "reference_genome": (PROJECT, "reference_genome"),
    "query_genome": (PROJECT, "query_genome"),
    "ev": (PROJECT, "ev"),
    "k_neighbors": (PROJECT, "n_neighbors"),
    "method": (CLUSTER, "method"),
    "resolution": (CLUSTER, "resolution"),
    "n_clusters_requested": (CLUSTER, "n_clusters_requested"),
    "n_neighbors": (CLUSTER, "n_neighbors"),
    "seed": (CLUSTER, "random_state"),
    "label_key": (LABEL, "label_key"),
    "label_method": (LABEL, "method"),
    "label_method_requested": (LABEL, "method_requested"),
    "label_note": (LABEL, "note"),
    "min_confidence": (LABEL, "min_confidence"),
    "max_mapping_distance": (LABEL, "max_mapping_distance"),
    "unknown_rate": (LABEL, "unknown_rate"),
}


def distance_column(label_key: str = LABEL) -> str:
    """Name the ``obs`` column of the mapping distance the labels under ``label_key`` saw.

    Parameters
    ----------
    label_key
        The labels' ``key_added``.

    Returns
    -------
    str
        ``scembed_mapping_distance`` (the projection's, equal) for the default key, else
        ``<label_key>_mapping_distance``.
    """
    return "scembed_mapping_distance" if label_key == LABEL else f"{label_key}_mapping_distance"


def probabilities_key(label_key: str = LABEL) -> str:
    """Name the ``obsm`` key of the class probabilities of the labels under ``label_key``.

    Parameters
    ----------
    label_key
        The labels' ``key_added``.

    Returns
    -------
    str
        ``<label_key>_probabilities`` (``scembed_label_probabilities`` by default).
    """
    return f"{label_key}_probabilities"
