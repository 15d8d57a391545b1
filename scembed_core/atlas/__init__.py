"""Atlas: project millions of cells with Dask, in bounded memory.

The input (``.h5ad`` or an AnnData ``.zarr`` store) is never loaded whole. The driver
reads ``obs`` and ``var`` only and maps the peaks onto the reference universe once; each
chunk of cells is then read (its slice of the CSR arrays), E-projected, placed on the
reference map (EV), labelled by kNN vote and written into a preallocated zarr store by a
Dask worker. Workers open the reference from its folder once per process, before their
first chunk (:func:`._worker.worker_reference`: numpy arrays, the map and label codes
memory-mapped from the bundle's compact files, no anndata; cached and keyed by the bundle's
checksums; nothing large is pickled), so a worker holds one copy of the reference plus one
chunk. A local cluster's workers fork from a forkserver that imported the chunk code once. A chunk sets its "done" marker only after its results are written, so a rerun
skips finished chunks (resumable). :func:`cluster_large` then clusters a subsample and
assigns every other cell to the nearest cluster centroid, chunk by chunk.

The output is an AnnData store that :func:`anndata.read_zarr` opens, with the keys of
:mod:`scembed_core.results` (zarr format 2, anndata encoding)::

    obs/                    input obs + scembed_n_regions, scembed_unmapped,
                            scembed_mapping_distance, scembed_mapping_outlier,
                            scembed_label (+ _predicted, _confidence, _similarity), and
                            after clustering scembed_cluster, scembed_cluster_label,
                            scembed_cluster_possibly_absent
    var/                    input peaks (there is no X: the counts stay in the input)
    obsm/X_scembed          (n_cells, dim) float32, NaN rows for unmapped cells
    obsm/X_scembed_whitened the reference's analysis space, when it has a whitening
    obsm/X_scembed_umap     (n_cells, 2) float32
    obsm/scembed_label_probabilities  class order in uns/scembed/label_classes
    uns/scembed/            as in memory: params (the run summary), project,
                            transfer_labels, cluster, annotate_clusters ({"params"}),
                            coverage, timings, label_classes, cluster_table; plus
                            scale (chunks, worker memory) and label_counts
    uns/scembed_chunks_done one bool per chunk: the resume markers

The in-memory neighbour arrays (obsm/scembed_neighbors) are not kept at this scale.

Input and output paths must be visible to the workers under the same names (same
machine, or a shared file system for a remote scheduler).

Modules: :mod:`._input` (the input's layout, reading a chunk of rows), :mod:`._plan` (what a
task is given), :mod:`._worker` (one chunk on a worker), :mod:`._store` (the zarr store),
:mod:`.project` (the driver), :mod:`.cluster` (clustering at scale) and :mod:`.results`
(reading a store back). Needs the ``atlas`` extra (dask, distributed, zarr), imported
only when used.
"""

from __future__ import annotations

from ._plan import MARKERS_KEY
from ._store import chunk_markers
from ._worker import peak_rss
from .cluster import cluster_large
from .project import DEFAULT_CHUNK_SIZE, DEFAULT_WORKER_MEMORY, project_out_of_core
from .results import open_result

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WORKER_MEMORY",
    "MARKERS_KEY",
    "project_out_of_core",
    "cluster_large",
    "open_result",
    "chunk_markers",
    "peak_rss",
]
