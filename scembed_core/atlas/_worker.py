"""What runs on a Dask worker: project, label and write one chunk of cells."""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._kernels import pool_cells
from ..labels.vote import (
    query_reference_neighbors,
    row_mean_ignoring_nan,
)
from ..project import ev_project
from ._input import open_input, read_rows
from ._plan import MARKERS_KEY, Plan, SharedMapping

if TYPE_CHECKING:
    from ..reference import Reference

_REFERENCES: dict[tuple, Reference] = {}
_REFERENCES_LOCK = threading.Lock()


def worker_reference(path: str, trust: bool) -> Reference:
    """Load a reference from its folder once per process (cached)."""
    key = (path, trust)
    with _REFERENCES_LOCK:
        if key not in _REFERENCES:
            from ..reference import resolve_reference

            _REFERENCES[key] = resolve_reference(path, trust=trust)
        return _REFERENCES[key]


def remember_reference(path: str, trust: bool, reference: Reference) -> None:
    """Let in-process (threaded) workers reuse the driver's copy of the reference."""
    with _REFERENCES_LOCK:
        _REFERENCES.setdefault((path, trust), reference)


def umap_epochs(reference: Reference, n_cells: int) -> int | None:
    """Epochs of the per-cell EV-projection, as in memory (None: the reference has no map).

    The in-memory path places every cell independently of the batch with umap-learn's
    count for up to 10,000 cells (:func:`scembed_core.evmap.transform`, ``per_cell``);
    ``n_cells`` no longer changes it, so a chunked run equals the in-memory one.
    """
    if reference.map_params is None:
        return None
    return reference.map_params.transform_epochs(0)


def analysis_dim(reference: Reference) -> int | None:
    """Dimension of the reference's whitened analysis space (None: it has none)."""
    whitening = getattr(reference, "whitening", None)
    return None if whitening is None else int(np.asarray(whitening.matrix).shape[1])


def peak_rss() -> int:
    """Peak resident memory of this process's own address space, in bytes.

    ``VmHWM`` from ``/proc/self/status`` (Linux). ``ru_maxrss`` is only the fallback: it
    survives fork + exec, so a worker spawned by a big driver would report the driver's
    memory at spawn time as its own peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def project_chunk(
    plan: Plan, index: int, mapping: SharedMapping, shipped: Reference | None = None
) -> dict:
    """Project, label and write one chunk of cells; runs on a Dask worker."""
    import zarr

    started = time.perf_counter()
    if shipped is not None:
        reference = shipped
    else:
        reference = worker_reference(plan.reference_path, plan.trust)
    begin = index * plan.chunk_size
    end = min(begin + plan.chunk_size, plan.source.n_obs)
    with open_input(plan.source.path, plan.source.kind) as group:
        signal = read_rows(group, plan.source, begin, end)
    read_seconds = time.perf_counter() - started
    model = reference.model
    embedding, n_regions = pool_cells(
        signal.indptr,
        signal.indices,
        mapping.indptr,
        mapping.indices,
        model.vectors,
        model.trained,
        pooling=model.pooling,
    )
    del signal
    results: dict[str, np.ndarray] = {
        "obsm/X_scembed": embedding,
        "obs/scembed_n_regions": n_regions.astype(np.int32),
        "obs/scembed_unmapped": n_regions == 0,
    }
    if plan.analysis_dim is not None:
        results["obsm/X_scembed_whitened"] = reference.analysis_space(embedding)
    neighbors = None
    if plan.has_cells:
        neighbors = query_reference_neighbors(reference, embedding, k=plan.k_neighbors)
        distance = row_mean_ignoring_nan(neighbors[1])
        results["obs/scembed_mapping_distance"] = distance.astype(np.float32)
        if plan.outlier_threshold is not None:
            results["obs/scembed_mapping_outlier"] = distance > plan.outlier_threshold
        if plan.categories:
            from ..labels.assign import assign_labels, probabilities_of

            labels = assign_labels(
                embedding,
                reference,
                method=plan.label_method,
                label_key=plan.label_key,
                k=plan.k_neighbors,
                min_confidence=plan.min_confidence,
                max_mapping_distance=plan.max_mapping_distance,
                unknown_rate=plan.unknown_rate,
                neighbors=neighbors,
                warn=False,
                n_regions=n_regions,
            )
            results["obsm/scembed_label_probabilities"] = probabilities_of(labels)
            for column, key in (
                ("label", "scembed_label"),
                ("predicted", "scembed_label_predicted"),
            ):
                codes = pd.Categorical(labels[column], categories=list(plan.categories)).codes
                results[f"obs/{key}/codes"] = codes.astype(np.int32)
            results["obs/scembed_label_confidence"] = labels["confidence"].to_numpy(np.float32)
            results["obs/scembed_label_similarity"] = labels["mean_similarity"].to_numpy(np.float32)
            results["obs/scembed_unknown"] = labels["unknown"].to_numpy(bool)
            results["obs/scembed_unknown_score"] = labels["unknown_score"].to_numpy(np.float32)
    if plan.ev:
        results["obsm/X_scembed_umap"] = ev_project(
            embedding, reference, neighbors=neighbors, n_epochs=plan.umap_epochs
        )
    root = zarr.open_group(plan.out, mode="r+", use_consolidated=False)
    for key, values in results.items():
        root[key][begin:end] = values
    root[MARKERS_KEY][index] = True  # last: the chunk counts as done only once fully written
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = f"pid-{os.getpid()}"
    return {
        "chunk": index,
        "n_cells": end - begin,
        "n_unmapped": int((n_regions == 0).sum()),
        "seconds": time.perf_counter() - started,
        "read_seconds": read_seconds,
        "worker": worker,
        "pid": os.getpid(),
        "peak_rss_bytes": peak_rss(),
    }
