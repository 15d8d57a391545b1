"""The one result writer: where every scEmbed result lives in an AnnData.

Rooms: ``_keys`` (key names), ``_params`` (what each step records and where),
``_write`` (the writers), ``_read`` (reading results back, the per-cell table, files).

The verbs of :mod:`scembed_core.tl` (and through them the command line), the app's
Export page and the Dask path (:mod:`scembed_core.atlas`, which writes the same keys
chunk by chunk into a zarr store) all write through the functions and key names here,
so their files read the same way.

Keys
----
``obsm``
    ``X_scembed``
        ``(n_cells, dim)`` float32 E-projection; NaN rows for cells that cover no trained
        reference region (they are "Unassigned" everywhere below).
    ``X_scembed_whitened``
        The reference's whitened analysis space (when it has a whitening); clustering and
        labels use it.
    ``X_scembed_umap``
        ``(n_cells, 2)`` EV-projection: positions on the reference map (when it has one).
    ``scembed_neighbors``, ``scembed_neighbor_distances``
        ``(n_cells, k)`` nearest reference cells (-1: none) and their cosine distances
        (in-memory results only; the Dask path does not keep them).
    ``<label key>_probabilities`` (``scembed_label_probabilities``)
        ``(n_cells, n_classes)`` float32 class probabilities, columns in the order of
        ``uns["scembed"]["label_classes"]``.
``obs``
    ``scembed_n_regions`` (int), ``scembed_unmapped`` (bool: no embedding),
    ``scembed_mapping_distance`` (mean cosine distance to the ``k`` nearest reference
    cells), ``scembed_mapping_outlier`` (bool: farther than the reference's own 99th
    percentile); ``scembed_cluster`` (categorical, numbered clusters then
    ``"Unassigned"``); ``scembed_label`` (after thresholds), ``scembed_label_predicted``
    (top class before thresholds), ``scembed_label_confidence``,
    ``scembed_label_similarity`` (1 - mapping distance) and
    ``scembed_label_mapping_distance`` (the distance the label's thresholds saw); the
    label columns are ``<key_added>_*`` for another ``key_added``.
    ``scembed_cluster_label`` (the cluster's majority label) and
    ``scembed_cluster_possibly_absent`` (bool): ``<cluster key>_label`` and
    ``<cluster key>_possibly_absent`` for another cluster key.
``obsp`` and ``uns["neighbors"]``
    The query's own kNN graph (:func:`scembed_core.tl.neighbors`, scanpy's layout:
    ``obsp["connectivities"]``, ``obsp["distances"]``, ``uns["neighbors"]["params"]``;
    ``obsp["<key>_connectivities"]`` and ``uns[<key>]`` with another ``key_added``).
``uns["scembed"]``
    ``params``
        The run's settings in one flat dict, always with the keys of :data:`RUN_PARAMS`
        (None for a step that did not run), taken from the records of the default keys.
    ``project``
        ``{"step": "project", "params": {...}}``: the projection's parameters, with
        ``mapping_distance_threshold`` (the reference's own 99th percentile, as the
        projection computed it).
    ``<key_added>`` (``scembed_cluster``, ``scembed_label``, ``scembed_cluster_label``)
        ``{"step": ..., "params": {...}}`` for each clustering, label transfer and cluster
        annotation, under the ``key_added`` of the call (as ``scanpy.tl.leiden`` records
        ``uns[key_added]["params"]``), so two calls with other keys do not overwrite each
        other; a clustering's ``resolution_curve`` and an annotation's ``cluster_table``
        (one row per cluster: ``cluster``, ``label``, ``agreement``, ``n_cells``,
        ``median_confidence``, ``median_mapping_distance``, ``possibly_absent``) sit beside
        its params.
    ``coverage``, ``timings``
        Peak-mapping summary (with its warnings) and seconds per projection stage.
    ``label_classes``
        Class order of the probabilities.
    ``liftover``, ``build_detection``, ``evaluation``
        When the peaks were lifted, the build detected, or a truth column given.
"""

from __future__ import annotations

from ..labels.vote import UNASSIGNED
from ._keys import (
    ANALYSIS,
    CLUSTER,
    CLUSTER_LABEL,
    EMBEDDING,
    LABEL,
    PROBABILITIES,
    PROJECT,
    RUN_PARAMS,
    UMAP,
    UNS_KEY,
    distance_column,
    probabilities_key,
)
from ._params import (
    cluster_params,
    label_params,
    project_params,
    record,
    record_into,
    scembed_uns,
)
from ._read import (
    cell_table,
    cluster_codes,
    cluster_table_of,
    h5_plain,
    h5ad_bytes,
    labels_frame,
    probability_csv_name,
    write_h5ad,
)
from ._write import (
    cluster_categorical,
    write_cluster_table,
    write_clusters,
    write_labels,
    write_neighbors,
    write_projection,
    write_run_facts,
)

__all__ = [
    "UNASSIGNED",
    "UNS_KEY",
    "RUN_PARAMS",
    "EMBEDDING",
    "ANALYSIS",
    "UMAP",
    "PROBABILITIES",
    "CLUSTER",
    "LABEL",
    "PROJECT",
    "CLUSTER_LABEL",
    "cluster_categorical",
    "project_params",
    "cluster_params",
    "label_params",
    "record",
    "record_into",
    "write_projection",
    "write_neighbors",
    "write_clusters",
    "distance_column",
    "probabilities_key",
    "cluster_table_of",
    "write_labels",
    "write_cluster_table",
    "write_run_facts",
    "cluster_codes",
    "labels_frame",
    "cell_table",
    "probability_csv_name",
    "h5_plain",
    "write_h5ad",
    "h5ad_bytes",
    "scembed_uns",
]
