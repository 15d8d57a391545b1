"""What runs on a Dask worker: project, label and write one chunk of cells."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import threading
import time
from pathlib import Path
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


def files_key(reference: Reference) -> str:
    """sha256 of the reference folder's file checksums: what a worker's copy must match.

    Parameters
    ----------
    reference
        The driver's reference.

    Returns
    -------
    str
        Hex digest of the manifest's ``files`` map (empty map for a geniml folder).
    """
    files = reference.manifest.get("files") or {}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def worker_reference(path: str, trust: bool, key: str | None = None) -> Reference:
    """Open a reference folder once per worker process (cached), without anndata.

    A scEmbed bundle is opened by path: its arrays are read with numpy (the map and label
    codes memory-mapped, shared through the page cache by every worker on a machine) and
    its cells from the compact map (:func:`scembed_core.compact.read_compact_cells`), so a
    worker neither imports anndata nor parses ``cells.h5ad``'s tables; nothing is pickled
    to it. A geniml folder is read as usual.

    Parameters
    ----------
    path
        The reference folder, as the driver resolved it.
    trust
        As in :func:`~scembed_core.reference.resolve_reference`.
    key
        :func:`files_key` of the driver's copy; a folder whose files changed since the
        driver read it is refused rather than mixed into one result. ``None``: not checked.

    Returns
    -------
    Reference
        This process's copy.

    Raises
    ------
    ReferenceBundleError
        The folder no longer holds the reference the driver planned with.
    """
    cache_key = (path, trust, key)
    with _REFERENCES_LOCK:
        if cache_key not in _REFERENCES:
            folder = Path(path)
            if (folder / "manifest.json").is_file():
                from ..reference.bundle import load_bundle

                loaded = load_bundle(folder, trust=trust, compact_cells=True)
            else:
                from ..reference import resolve_reference

                loaded = resolve_reference(path, trust=trust)
            if key is not None and files_key(loaded) != key:
                from ..errors import ReferenceBundleError

                raise ReferenceBundleError(
                    f"The reference folder {path} changed after the run started (its files' "
                    "checksums differ from the driver's); run again."
                )
            _REFERENCES[cache_key] = loaded
        return _REFERENCES[cache_key]


def hold_reference(path: str, trust: bool, key: str | None) -> dict:
    """Open the reference on this worker ahead of its first chunk; seconds it took.

    Parameters
    ----------
    path, trust, key
        As in :func:`worker_reference`.

    Returns
    -------
    dict
        ``seconds`` spent here (0 when already held), ``process_cpu_seconds`` (CPU time of
        this worker process since it started: interpreter, imports, reference), ``pid``
        and whether ``anndata`` was imported in this process.
    """
    import sys

    started = time.perf_counter()
    worker_reference(path, trust, key)
    return {
        "seconds": time.perf_counter() - started,
        "process_cpu_seconds": time.process_time(),
        "pid": os.getpid(),
        "anndata_imported": "anndata" in sys.modules,
    }


def remember_reference(path: str, trust: bool, reference: Reference) -> None:
    """Let in-process (threaded) workers reuse the driver's copy of the reference.

    Parameters
    ----------
    path, trust
        As in :func:`worker_reference`.
    reference
        The driver's copy.
    """
    with _REFERENCES_LOCK:
        _REFERENCES.setdefault((path, trust, files_key(reference)), reference)


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
        reference = worker_reference(plan.reference_path, plan.trust, plan.reference_key)
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
