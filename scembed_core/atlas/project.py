"""The driver of an out-of-core projection: plan, store, Dask cluster, chunk tasks, summary."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._types import LabelMethod, ProgressCallback
from ..errors import MissingDependencyError, ParameterError
from ..labels.unknown import UNKNOWN
from ..labels.vote import (
    UNASSIGNED,
)
from ..project import mapping_warnings
from ..regions import PeakMapping
from ..results import h5_plain, label_params, project_params, record_into
from ..stopping import check_stop
from ._input import describe_input, peak_mapping
from ._plan import Plan, SharedMapping
from ._store import (
    CLUSTER_COLUMNS,
    chunk_markers,
    consolidate,
    create_store,
    drop_obs_columns,
    open_store,
    replace_elem,
    run_fingerprint,
    store_stats,
)
from ._worker import (
    analysis_dim,
    files_key,
    hold_reference,
    peak_rss,
    project_chunk,
    remember_reference,
    umap_epochs,
)

if TYPE_CHECKING:
    from ..reference import Reference

DEFAULT_CHUNK_SIZE = 50_000
#: Memory limit of each local worker; a 50,000-cell chunk peaked at 0.74 GiB (BENCHMARKS.md).
DEFAULT_WORKER_MEMORY = "3GiB"
#: Modules the local workers' forkserver imports once, in this order (the first sets
#: ``NUMBA_NUM_THREADS=1`` before numba is imported); each worker forks from it.
FORKSERVER_PRELOAD = ("scembed_core._worker_env", "distributed", "scembed_core.atlas._worker")


@contextmanager
def _workers_skip_main() -> Iterator[None]:
    """Start worker processes without re-running the caller's ``__main__`` script.

    multiprocessing re-runs a main module that was started from a path in every new process
    (to find pickled functions in it). Workers only run this package's chunk code, and a main
    script may not be re-runnable (a notebook's, a test runner's temporary script, one
    without an ``if __name__ == "__main__"`` guard), so it is hidden while they start.
    """
    import sys
    import types

    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield  # started with -m (or none): workers import it by name, which is safe
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@contextmanager
def _dask_client(scheduler: Any, n_workers: int, memory_limit: str | int) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise MissingDependencyError(
            "The out-of-core path (--dask, or an output ending in .zarr) needs Dask's "
            "'distributed' package, which is not installed: pip install 'scembed[atlas]' "
            "(or project without --dask into an .h5ad)."
        ) from exc

    if scheduler is None:
        import dask
        from distributed.utils import get_mp_context

        # Workers fork from a forkserver that imports the chunk code once, instead of each
        # spawned worker importing it again (most of a worker's start-up CPU; BENCHMARKS.md).
        config = {"distributed.worker.multiprocessing-method": "forkserver"}
        with dask.config.set(config), _workers_skip_main():
            get_mp_context().set_forkserver_preload(list(FORKSERVER_PRELOAD))
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env={"NUMBA_NUM_THREADS": "1"},
            )
        with cluster, Client(cluster) as client:
            yield client
    elif isinstance(scheduler, str):
        with Client(scheduler) as client:
            yield client
    else:
        yield scheduler  # a distributed.Client the caller manages


def _hold_on_workers(client: Any, plan: Plan, timings: dict[str, float]) -> None:
    """Have every worker open the reference by path, in parallel, before the first chunk.

    Records ``timings["hold_reference"]`` (wall seconds until all hold it) and
    ``timings["hold_reference_max_worker"]`` (the slowest worker's own seconds). A worker
    that joins later opens it with its first chunk.
    """
    if plan.reference_path is None:
        return
    started = time.perf_counter()
    workers = list(client.scheduler_info()["workers"])
    futures = [
        client.submit(
            hold_reference,
            plan.reference_path,
            plan.trust,
            plan.reference_key,
            workers=[worker],
            allow_other_workers=True,  # a worker gone meanwhile must not hang the run
            pure=False,
            key=f"scembed-hold-{uuid.uuid4().hex[:12]}",
        )
        for worker in workers
    ]
    held = client.gather(futures)
    timings["hold_reference"] = time.perf_counter() - started
    timings["hold_reference_max_worker"] = max((h["seconds"] for h in held), default=0.0)


def _run_chunks(
    client: Any,
    plan: Plan,
    todo: list[int],
    mapping: PeakMapping,
    reference: Reference,
    report: ProgressCallback,
) -> list[dict]:
    from distributed import as_completed

    shared = SharedMapping(
        np.asarray(mapping.matrix.indptr, dtype=np.int64),
        np.asarray(mapping.matrix.indices, dtype=np.int64),
    )
    shared_future = client.scatter(shared, broadcast=True)
    shipped = None if plan.reference_path else client.scatter(reference, broadcast=True)
    token = uuid.uuid4().hex[:12]
    futures = [
        client.submit(
            project_chunk, plan, i, shared_future, shipped, key=f"scembed-chunk-{token}-{i}"
        )
        for i in todo
    ]
    results, cells, started = [], 0, time.perf_counter()
    try:
        for future in as_completed(futures):
            result = future.result()
            check_stop("The atlas projection")  # between chunks; the rest are cancelled
            results.append(result)
            cells += result["n_cells"]
            rate = cells / max(time.perf_counter() - started, 1e-9)
            report(
                len(results) / len(todo),
                f"chunk {len(results)}/{len(todo)} ({rate:,.0f} cells/s)",
            )
    except BaseException:
        client.cancel(futures)
        raise
    return results


def project_out_of_core(
    input_path: str | Path,
    reference: str | Path | Reference,
    out_path: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    scheduler: Any = None,
    k_neighbors: int = 15,
    min_confidence: float = 0.0,
    max_mapping_distance: float | None = None,
    label_key: str | None = None,
    label_method: LabelMethod = "classifier",
    ev: bool = True,
    unknown_rate: float | None = None,
    layer: str | None = None,
    n_workers: int = 2,
    memory_limit: str | int = DEFAULT_WORKER_MEMORY,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    trust: bool = False,
) -> dict:
    """Project and annotate a dataset too large for memory, chunk by chunk on Dask workers.

    Parameters
    ----------
    input_path
        A CSR (or dense) ``.h5ad`` file or AnnData ``.zarr`` store, cells x peaks.
    reference
        A loaded :class:`~scembed_core.reference.Reference` or a spec for
        :func:`~scembed_core.reference.resolve_reference` (``"default"``, a folder,
        ``"hf:OWNER/NAME"``). Workers load it from its folder; a reference without a
        folder is scattered to them instead.
    out_path
        Output ``.zarr`` store (see the module docstring for its layout). If it holds an
        unfinished run with the same input, reference and parameters, the run resumes and
        only chunks without a "done" marker are computed.
    chunk_size
        Cells per task; a worker's memory grows with it, not with the number of cells
        (measured peak 0.74 GiB per worker at 50,000 cells of ~170 peaks each, libraries
        and reference included).
    scheduler
        None: a local cluster of ``n_workers`` processes with one thread each; a string:
        the address of a running Dask scheduler; or a ``distributed.Client``.
    k_neighbors, min_confidence, max_mapping_distance, label_key, label_method
        As in :func:`~scembed_core.labels.assign.assign_labels` (the one label rule, also used
        by the in-memory pipeline and the app); class probabilities are written to
        ``obsm["scembed_label_probabilities"]`` in the order of
        ``uns["scembed"]["label_classes"]``.
    ev
        Also place the cells on the reference UMAP.
    unknown_rate
        Strictness of the Unknown rule (None: the reference's calibrated rate, 0: off).
    layer
        The layer holding the counts (default ``X``, else the ``counts`` layer).
    n_workers, memory_limit
        Size of the local cluster (ignored with a ``scheduler``).
    overwrite
        Replace an existing store holding other results instead of raising.
    progress
        ``progress(fraction, message)``, called after each chunk.
    trust
        Allow a geniml folder's gensim pickle and parse a saved kNN index (as in
        ``resolve_reference``); scEmbed bundles hold no pickle.

    Returns
    -------
    dict
        Summary: cells, chunks computed and skipped, seconds, cells per second, peak
        resident memory of each worker and of the driver, coverage and label counts. The
        same facts are stored in ``uns["scembed"]``.

    Raises
    ------
    InputFormatError
        The input is not a row-readable AnnData file (e.g. CSC), or its counts are invalid.
    ParameterError
        Bad parameters, or ``out_path`` holds other results and ``overwrite`` is False.
    """
    from ..reference import Reference, resolve_reference

    if chunk_size < 1:
        raise ParameterError(f"chunk_size must be >= 1, got {chunk_size}.")
    if k_neighbors < 1:
        raise ParameterError(f"k_neighbors must be >= 1, got {k_neighbors}.")
    if not 0.0 <= min_confidence <= 1.0:
        raise ParameterError(f"min_confidence must be in [0, 1], got {min_confidence}.")
    out = Path(out_path)
    if out.suffix != ".zarr":
        raise ParameterError(f"The output must be a .zarr store, got {out.name!r}.")
    report = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    report(0.0, "Reading the peaks and mapping them onto the reference universe")
    if not isinstance(reference, Reference):
        reference = resolve_reference(reference, trust=trust)
    source, obs, var = describe_input(input_path, layer)
    mapping = peak_mapping(var, source, reference)
    timings["map_peaks"] = time.perf_counter() - started

    has_cells = reference.cells is not None
    categories: tuple[str, ...] = ()
    if has_cells and reference.can_transfer_labels:
        label_key = label_key or reference.default_label_key
        if label_key not in reference.cells.obs:
            raise ParameterError(
                f"Label column {label_key!r} is not in the reference; choose one of "
                f"{reference.label_keys}."
            )
        names = pd.Categorical(reference.cells.obs[label_key].astype(str)).categories
        categories = tuple(str(c) for c in names if c not in (UNASSIGNED, UNKNOWN)) + (
            UNKNOWN,
            UNASSIGNED,
        )
    from ..labels.assign import resolve_label_method

    used_method, label_note = "knn", None
    label_classes: tuple[str, ...] = ()
    if categories:
        used_method, label_note = resolve_label_method(reference, label_method, label_key)
        if used_method == "classifier":
            label_classes = tuple(reference.label_model.classes)
        else:
            label_classes = tuple(str(c) for c in names)
    if ev and not reference.can_ev_project:
        ev = False  # region-only reference: E-projection (and nothing to place on a map)
    folder = reference.path
    loadable = folder is not None and any(
        (Path(folder) / name).is_file() for name in ("manifest.json", "config.yaml", "model.bin")
    )
    threshold = None
    if reference.cells is not None:
        from ..labels.vote import mapping_distance_threshold

        threshold = mapping_distance_threshold(reference, int(min(k_neighbors, reference.n_cells)))
    plan = Plan(
        source=source,
        out=str(out.resolve()),
        chunk_size=int(chunk_size),
        n_chunks=-(-source.n_obs // int(chunk_size)),
        reference_path=str(Path(folder).resolve()) if loadable else None,
        reference_key=files_key(reference) if loadable else None,
        trust=trust,
        k_neighbors=int(k_neighbors),
        label_key=label_key if categories else None,
        label_method=used_method,
        label_classes=label_classes,
        min_confidence=float(min_confidence),
        max_mapping_distance=max_mapping_distance,
        outlier_threshold=None if threshold is None else float(threshold),
        ev=ev,
        has_cells=has_cells,
        categories=categories,
        umap_epochs=umap_epochs(reference, source.n_obs) if ev else None,
        analysis_dim=analysis_dim(reference),
        unknown_rate=None if unknown_rate is None else float(unknown_rate),
    )
    if plan.reference_path is not None:  # in-process (threaded) workers reuse this copy
        remember_reference(plan.reference_path, trust, reference)

    stage = time.perf_counter()
    run = run_fingerprint(plan, reference)
    resumed = open_store(out, run, overwrite)
    if not resumed:
        create_store(out, plan, obs, var, reference.model.dim, run)
    del obs
    done = chunk_markers(out)
    todo = [int(i) for i in np.flatnonzero(~done)]
    timings["prepare_store"] = time.perf_counter() - stage

    import zarr

    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    results: list[dict] = []
    stage = time.perf_counter()
    if todo:
        drop_obs_columns(root, CLUSTER_COLUMNS)  # now stale
        report(0.0, f"Projecting {len(todo)} chunk(s) of {plan.chunk_size:,} cells")
        with _dask_client(scheduler, n_workers, memory_limit) as client:
            timings["start_workers"] = time.perf_counter() - stage
            _hold_on_workers(client, plan, timings)
            results = _run_chunks(client, plan, todo, mapping, reference, report)
    timings["chunks"] = time.perf_counter() - stage

    stage = time.perf_counter()
    workers: dict[str, int] = {}
    for result in results:
        workers[result["worker"]] = max(workers.get(result["worker"], 0), result["peak_rss_bytes"])
    computed = sum(r["n_cells"] for r in results)
    coverage = {**mapping.summary(), **store_stats(root, plan)}
    warnings = mapping_warnings(
        mapping, reference.genome, n_unmapped_cells=coverage["n_unmapped_cells"]
    )
    if label_note:
        warnings.append(label_note)
    coverage["warnings"] = warnings
    timings["finalize"] = time.perf_counter() - stage
    seconds = time.perf_counter() - started
    summary = {
        "out": str(out),
        "n_cells": source.n_obs,
        "chunk_size": plan.chunk_size,
        "n_chunks": plan.n_chunks,
        "n_chunks_computed": len(results),
        "n_chunks_skipped": plan.n_chunks - len(todo),
        "resumed": resumed,
        "seconds": seconds,
        "cells_per_second": computed / timings["chunks"] if computed else 0.0,
        "worker_peak_rss_bytes": workers,
        "max_worker_peak_rss_bytes": max(workers.values(), default=0),
        "worker_memory_limit": str(memory_limit) if scheduler is None else "scheduler's",
        "driver_peak_rss_bytes": peak_rss(),
        "timings": timings,
        "coverage": coverage,
    }
    scembed: dict = {}
    projected = project_params(
        reference,
        ev=plan.ev,
        n_neighbors=plan.k_neighbors,
        mapping_distance_threshold=plan.outlier_threshold,
    )
    projected.update(chunk_size=plan.chunk_size, input=plan.source.path)
    record_into(scembed, "project", projected)
    if plan.categories:
        labelled = label_params(
            method=plan.label_method,
            method_requested=label_method,
            note=label_note,
            label_key=plan.label_key,
            n_neighbors=plan.k_neighbors,
            min_confidence=plan.min_confidence,
            max_mapping_distance=plan.max_mapping_distance,
        )
        labelled["unknown_rate"] = plan.unknown_rate
        record_into(scembed, "transfer_labels", labelled)
    stored_coverage = {k: v for k, v in coverage.items() if k != "label_counts"}
    scale = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    scale["workers"] = np.asarray(list(workers), dtype=object)  # addresses contain "/"
    scale["worker_peak_rss_bytes"] = np.asarray(list(workers.values()), dtype=np.int64)
    uns = {**scembed, "coverage": stored_coverage, "timings": timings, "scale": scale}
    if plan.label_classes:  # names may contain "/", so an array, not keys
        uns["label_classes"] = np.asarray(plan.label_classes, dtype=object)
    if "label_counts" in coverage:  # label names may contain "/", so not as keys
        counts = coverage["label_counts"]
        uns["label_counts"] = pd.DataFrame(
            {"label": list(counts), "n_cells": list(counts.values())}
        )
    uns["fit"] = h5_plain(_fit(reference, mapping, coverage))
    replace_elem(root["uns"], "scembed", uns)
    consolidate(out)
    report(1.0, "Projection done")
    return summary


def _fit(reference: Reference, mapping: PeakMapping, coverage: dict) -> dict:
    """Judge the dataset (:mod:`scembed_core.fit`) from the stored columns' statistics."""
    from ..fit import judge_fit, with_unknown

    fit = judge_fit(
        reference,
        peak_overlap=mapping.fraction_mapped,
        n_peaks=mapping.n_peaks,
        median_regions=coverage["median_regions_per_cell"],
        n_cells=coverage["n_cells"],
        n_unmapped_cells=coverage["n_unmapped_cells"],
    )
    counts = coverage.get("label_counts")
    if counts is not None:
        mapped = max(coverage["n_cells"] - coverage["n_unmapped_cells"], 1)
        fit = with_unknown(fit, counts.get(UNKNOWN, 0) / mapped)
    return fit
