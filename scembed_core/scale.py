"""Atlas scale: project millions of cells with Dask, in bounded memory.

The input (``.h5ad`` or an AnnData ``.zarr`` store) is never loaded whole. The driver
reads ``obs`` and ``var`` only and maps the peaks onto the reference universe once; each
chunk of cells is then read (its slice of the CSR arrays), E-projected, placed on the
reference map (EV), labelled by kNN vote and written into a preallocated zarr store by a
Dask worker. Workers load the reference from its folder once per process (a cached
loader: nothing large is pickled), so a worker holds one copy of the reference plus one
chunk. A chunk sets its "done" marker only after its results are written, so a rerun
skips finished chunks (resumable). :func:`cluster_large` then clusters a subsample and
assigns every other cell to the nearest cluster centroid, chunk by chunk.

The output is an AnnData store that :func:`anndata.read_zarr` opens, with the keys of
:func:`scembed_core.pipeline.annotated_adata` (zarr format 2, anndata encoding)::

    obs/                    input obs + scembed_n_regions, scembed_unmapped,
                            scembed_mapping_distance, scembed_mapping_outlier,
                            scembed_label (+ _confidence, _similarity), and after
                            clustering scembed_cluster, scembed_cluster_label
    var/                    input peaks (there is no X: the counts stay in the input)
    obsm/X_scembed          (n_cells, dim) float32, NaN rows for unmapped cells
    obsm/X_scembed_whitened the reference's analysis space, when it has a whitening
    obsm/X_scembed_umap     (n_cells, 2) float32
    uns/scembed/            parameters, coverage, timings, worker memory
    uns/scembed_chunks_done one bool per chunk: the resume markers

Input and output paths must be visible to the workers under the same names (same
machine, or a shared file system for a remote scheduler).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._kernels import pool_cells
from ._types import ProgressCallback
from .annotate import (
    UNASSIGNED,
    cluster_vote,
    query_reference_neighbors,
    row_mean_ignoring_nan,
)
from .errors import CountValueError, DuplicateNamesError, InputFormatError, ParameterError
from .project import ev_project, mapping_warnings
from .regions import PeakMapping, binary_signal, map_peaks_to_universe

if TYPE_CHECKING:
    from .reference import Reference

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WORKER_MEMORY",
    "project_out_of_core",
    "cluster_large",
    "open_result",
    "chunk_markers",
    "peak_rss",
]

DEFAULT_CHUNK_SIZE = 50_000
#: Memory limit of each local worker; a 50,000-cell chunk peaked at 0.74 GiB (BENCHMARKS.md).
DEFAULT_WORKER_MEMORY = "3GiB"
MARKERS_KEY = "uns/scembed_chunks_done"
_RUN_ATTR = "scembed-run"
_ARRAY = {"encoding-type": "array", "encoding-version": "0.2.0"}
_CATEGORICAL = {"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": False}


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class _Input:
    """Where the cells x peaks matrix of a large dataset lives (no data, just the layout)."""

    path: str
    kind: str  # "h5ad" or "zarr"
    key: str  # "X" or "layers/NAME"
    dense: bool
    n_obs: int
    n_vars: int
    nnz: int


@contextmanager
def _open_input(path: str, kind: str) -> Iterator[Any]:
    if kind == "h5ad":
        import h5py

        with h5py.File(path, "r") as handle:
            yield handle
    else:
        import zarr

        yield zarr.open_group(path, mode="r")


def _input_kind(path: Path) -> str:
    import h5py

    if path.is_dir() and (
        path.suffix == ".zarr" or (path / ".zgroup").is_file() or (path / "zarr.json").is_file()
    ):
        return "zarr"
    if path.is_file() and h5py.is_hdf5(path):
        return "h5ad"
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    raise InputFormatError(
        f"{path.name} is neither an .h5ad file nor an AnnData .zarr store, which is what the "
        "out-of-core path reads. Convert it first: read_dataset(path).write_h5ad('data.h5ad')."
    )


def _choose_key(group: Any, layer: str | None, name: str) -> str:
    layers = list(group["layers"].keys()) if "layers" in group else []
    if layer is not None:
        if layer not in layers:
            raise InputFormatError(f"{name} has no layer {layer!r}; its layers are {layers}.")
        return f"layers/{layer}"
    if "X" in group:
        return "X"
    if "counts" in layers:
        return "layers/counts"
    raise InputFormatError(f"{name} has no X matrix and no 'counts' layer (layers: {layers}).")


def _describe_input(
    path: str | Path, layer: str | None
) -> tuple[_Input, pd.DataFrame, pd.DataFrame]:
    """Matrix layout, obs and var of a large dataset, reading no count data."""
    from anndata.io import read_elem

    path = Path(path)
    kind = _input_kind(path)
    try:
        with _open_input(str(path), kind) as group:
            if "obs" not in group or "var" not in group:
                raise InputFormatError(f"{path.name} is not AnnData (no obs/var).")
            key = _choose_key(group, layer, path.name)
            elem = group[key]
            encoding = str(elem.attrs.get("encoding-type", elem.attrs.get("h5sparse_format", "")))
            if encoding in ("csr_matrix", "csr"):
                n_obs, n_vars = (
                    int(v) for v in elem.attrs.get("shape", elem.attrs.get("h5sparse_shape"))
                )
                nnz, dense = int(elem["data"].shape[0]), False
            elif encoding in ("csc_matrix", "csc"):
                raise InputFormatError(
                    f"{path.name}: {key} is stored column-major (CSC), so cells cannot be read "
                    "in row chunks. Rewrite it as CSR, e.g. adata.X = adata.X.tocsr() before "
                    "write_h5ad, or with anndata.experimental.concat_on_disk."
                )
            elif hasattr(elem, "shape") and len(elem.shape) == 2:
                n_obs, n_vars = (int(v) for v in elem.shape)
                nnz, dense = n_obs * n_vars, True
            else:
                raise InputFormatError(f"{path.name}: {key} is neither a dense nor a CSR matrix.")
            obs, var = read_elem(group["obs"]), read_elem(group["var"])
    except (InputFormatError, FileNotFoundError):
        raise
    except Exception as exc:
        raise InputFormatError(
            f"{path.name} could not be read as AnnData ({type(exc).__name__}: {exc})."
        ) from exc
    if (len(obs), len(var)) != (n_obs, n_vars):
        raise InputFormatError(
            f"{path.name}: {key} is {n_obs:,} x {n_vars:,} but obs has {len(obs):,} rows and "
            f"var {len(var):,}."
        )
    if n_obs == 0 or n_vars == 0:
        from .errors import EmptyDataError

        raise EmptyDataError(f"{path.name} has {n_obs} cells and {n_vars} peaks.")
    obs.index = obs.index.astype(str)
    if not obs.index.is_unique:
        raise DuplicateNamesError(
            f"{path.name}: {int(obs.index.duplicated().sum()):,} cell barcodes occur more than "
            "once. Barcodes must be unique; prefix each with its sample."
        )
    source = _Input(str(path.resolve()), kind, key, dense, n_obs, n_vars, nnz)
    return source, obs, var


def _read_rows(group: Any, source: _Input, begin: int, end: int) -> sp.csr_matrix:
    """Binary cells x peaks CSR matrix of cells ``begin:end``, reading only their slice."""
    elem = group[source.key]
    if source.dense:
        x = sp.csr_matrix(np.asarray(elem[begin:end]))
    else:
        indptr = np.asarray(elem["indptr"][begin : end + 1], dtype=np.int64)
        low, high = int(indptr[0]), int(indptr[-1])
        data = np.asarray(elem["data"][low:high])
        indices = np.asarray(elem["indices"][low:high])
        x = sp.csr_matrix((data, indices, indptr - low), shape=(end - begin, source.n_vars))
    if x.dtype.kind not in "biuf":
        raise CountValueError(f"Counts have type {x.dtype}; expected numbers.")
    if x.dtype.kind == "f" and not np.isfinite(x.data).all():
        raise CountValueError(
            f"Cells {begin:,}-{end - 1:,} of {Path(source.path).name} have counts that are not "
            "finite (NaN or infinite). Replace missing values by 0."
        )
    if x.dtype.kind in "if" and (x.data < 0).any():
        raise CountValueError(
            f"Cells {begin:,}-{end - 1:,} of {Path(source.path).name} have negative counts. "
            "Expected raw, non-negative counts, not normalised or scaled values."
        )
    return binary_signal(x)


def _peak_mapping(var: pd.DataFrame, source: _Input, reference: Reference) -> PeakMapping:
    from .io import regions_from_var

    name = Path(source.path).name
    regions = regions_from_var(var, name).validate(f"peaks of {name}")
    names = pd.Index(regions.names)
    if not names.is_unique:
        raise DuplicateNamesError(
            f"{name}: {int(names.duplicated().sum()):,} peaks occur more than once; merge "
            "duplicated peaks (e.g. bedtools merge) first."
        )
    return map_peaks_to_universe(regions, reference.model.universe)


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Plan:
    """Everything a chunk task needs besides the peak mapping (small; sent with each task)."""

    source: _Input
    out: str
    chunk_size: int
    n_chunks: int
    reference_path: str | None
    trust: bool
    k_neighbors: int
    label_key: str | None
    label_method: str  # the method that runs (resolved once on the driver)
    label_classes: tuple[str, ...]  # column order of obsm["scembed_label_probabilities"]
    min_confidence: float
    max_mapping_distance: float | None
    outlier_threshold: float | None
    ev: bool
    has_cells: bool
    categories: tuple[str, ...]
    umap_epochs: int | None
    analysis_dim: int | None  # dimension of the reference's whitened analysis space, if any


@dataclass(frozen=True)
class _Mapping:
    """CSR structure of the peaks x universe overlap matrix (scattered to workers once)."""

    indptr: np.ndarray
    indices: np.ndarray


_REFERENCES: dict[tuple, Reference] = {}
_REFERENCES_LOCK = threading.Lock()


def _worker_reference(path: str, trust: bool) -> Reference:
    """Load a reference from its folder once per process (cached)."""
    key = (path, trust)
    with _REFERENCES_LOCK:
        if key not in _REFERENCES:
            from .reference import resolve_reference

            _REFERENCES[key] = resolve_reference(path, trust=trust)
        return _REFERENCES[key]


def _umap_epochs(reference: Reference, n_cells: int) -> int | None:
    """Epochs UMAP would use to transform all ``n_cells`` at once (None: model fixes them).

    umap-learn picks 100 epochs for batches of <= 10,000 cells and 30 above; taking the
    count from the whole dataset keeps it independent of the chunk size.
    """
    if reference.map_params is None:
        return None
    return reference.map_params.transform_epochs(n_cells)


def _analysis_dim(reference: Reference) -> int | None:
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


def _project_chunk(
    plan: _Plan, index: int, mapping: _Mapping, shipped: Reference | None = None
) -> dict:
    """Project, label and write one chunk of cells; runs on a Dask worker."""
    import zarr

    started = time.perf_counter()
    if shipped is not None:
        reference = shipped
    else:
        reference = _worker_reference(plan.reference_path, plan.trust)
    begin = index * plan.chunk_size
    end = min(begin + plan.chunk_size, plan.source.n_obs)
    with _open_input(plan.source.path, plan.source.kind) as group:
        signal = _read_rows(group, plan.source, begin, end)
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
            from .labeling import assign_labels, probabilities_of

            labels = assign_labels(
                embedding,
                reference,
                method=plan.label_method,
                label_key=plan.label_key,
                k=plan.k_neighbors,
                min_confidence=plan.min_confidence,
                max_mapping_distance=plan.max_mapping_distance,
                neighbors=neighbors,
                warn=False,
            )
            results["obsm/scembed_label_probabilities"] = probabilities_of(labels)
            codes = pd.Categorical(labels["label"], categories=list(plan.categories)).codes
            results["obs/scembed_label/codes"] = codes.astype(np.int32)
            results["obs/scembed_label_confidence"] = labels["confidence"].to_numpy(np.float32)
            results["obs/scembed_label_similarity"] = labels["mean_similarity"].to_numpy(np.float32)
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


# --------------------------------------------------------------------------- output store


def _reference_identity(reference: Reference) -> str:
    import hashlib

    files = reference.manifest.get("files")
    if files:
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(reference.model.vectors).tobytes()).hexdigest()


def _fingerprint(plan: _Plan, reference: Reference) -> dict:
    path = Path(plan.source.path)
    stat = path.stat() if path.is_file() else None
    return {
        "input": plan.source.path,
        "input_bytes": stat.st_size if stat else -1,
        "input_mtime_ns": stat.st_mtime_ns if stat else -1,
        "matrix": plan.source.key,
        "n_obs": plan.source.n_obs,
        "n_vars": plan.source.n_vars,
        "nnz": plan.source.nnz,
        "reference": _reference_identity(reference),
        "chunk_size": plan.chunk_size,
        "k_neighbors": plan.k_neighbors,
        "label_key": plan.label_key or "",
        "label_method": plan.label_method,
        "min_confidence": plan.min_confidence,
        "max_mapping_distance": -1.0
        if plan.max_mapping_distance is None
        else plan.max_mapping_distance,
        "ev": plan.ev,
    }


def _set_attrs(node: Any, attrs: dict) -> Any:
    node.attrs.update(attrs)
    return node


def _create_store(
    out: Path, plan: _Plan, obs: pd.DataFrame, var: pd.DataFrame, dim: int, run: dict
) -> None:
    """Write the AnnData skeleton with preallocated, chunk-aligned result arrays."""
    import zarr
    from anndata.io import write_elem

    n, rows = plan.source.n_obs, plan.chunk_size
    root = zarr.open_group(str(out), mode="w", zarr_format=2)
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    obs = obs.drop(columns=[c for c in obs.columns if str(c).startswith("scembed_")])
    write_elem(root, "obs", obs)
    write_elem(root, "var", var)
    write_elem(root, "obsm", {})
    write_elem(root, "uns", {})

    def array(group: Any, name: str, shape: tuple, dtype: str, fill: Any) -> None:
        chunks = (rows, *shape[1:])
        created = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill)
        _set_attrs(created, _ARRAY)

    array(root["obsm"], "X_scembed", (n, dim), "float32", np.nan)
    if plan.analysis_dim is not None:
        array(root["obsm"], "X_scembed_whitened", (n, plan.analysis_dim), "float32", np.nan)
    if plan.ev:
        array(root["obsm"], "X_scembed_umap", (n, 2), "float32", np.nan)
    columns = {"scembed_n_regions": ("int32", 0), "scembed_unmapped": ("bool", False)}
    if plan.has_cells:
        columns["scembed_mapping_distance"] = ("float32", np.nan)
        if plan.outlier_threshold is not None:
            columns["scembed_mapping_outlier"] = ("bool", False)
    for name, (dtype, fill) in columns.items():
        array(root["obs"], name, (n,), dtype, fill)
    added = list(columns)
    if plan.categories:
        group = _set_attrs(root["obs"].create_group("scembed_label"), _CATEGORICAL)
        write_elem(group, "categories", np.asarray(plan.categories, dtype=object))
        array(group, "codes", (n,), "int32", -1)
        for name in ("scembed_label_confidence", "scembed_label_similarity"):
            array(root["obs"], name, (n,), "float32", np.nan)
        shape = (n, len(plan.label_classes))
        array(root["obsm"], "scembed_label_probabilities", shape, "float32", np.nan)
        added += ["scembed_label", "scembed_label_confidence", "scembed_label_similarity"]
    order = list(root["obs"].attrs.get("column-order", []))
    root["obs"].attrs["column-order"] = order + added
    markers = root["uns"].create_array(
        "scembed_chunks_done", shape=(plan.n_chunks,), chunks=(1,), dtype="bool", fill_value=False
    )
    _set_attrs(markers, _ARRAY)
    root.attrs[_RUN_ATTR] = run  # last: a store without it is not a (resumable) run


def _open_store(out: Path, run: dict, overwrite: bool) -> bool:
    """Whether ``out`` holds a resumable run with the same fingerprint (else clear it)."""
    import zarr

    if not out.exists():
        return False
    try:
        group = zarr.open_group(str(out), mode="r", use_consolidated=False)
        previous = dict(group.attrs.get(_RUN_ATTR) or {})
    except Exception:
        previous = {}
    if previous == run:
        return True
    if not overwrite:
        changed = sorted(k for k in run if previous.get(k) != run[k]) if previous else []
        what = f"different {', '.join(changed)}" if changed else "not a scEmbed run"
        raise ParameterError(
            f"{out} already exists and holds other results ({what}). Choose another output "
            "path, or pass overwrite=True (command line: delete the folder) to start afresh."
        )
    shutil.rmtree(out)
    return False


def chunk_markers(out_path: str | Path) -> np.ndarray:
    """The per-chunk "done" markers of a run (True: the chunk's results are written)."""
    import zarr

    root = zarr.open_group(str(out_path), mode="r", use_consolidated=False)
    return np.asarray(root[MARKERS_KEY][:], dtype=bool)


def _drop_obs_columns(root: Any, names: list[str]) -> None:
    obs = root["obs"]
    present = [name for name in names if name in obs]
    for name in present:
        del obs[name]
    if present:
        order = [c for c in obs.attrs.get("column-order", []) if c not in present]
        obs.attrs["column-order"] = order


def _write_elem(parent: Any, key: str, value: Any) -> None:
    """Write (or replace) one anndata element under a zarr group."""
    from anndata.io import write_elem

    from .pipeline import h5_plain

    if key in parent:
        del parent[key]
    write_elem(parent, key, h5_plain(value) if isinstance(value, dict) else value)


def _consolidate(out: Path) -> None:
    import zarr

    zarr.consolidate_metadata(str(out), zarr_format=2)


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for begin in range(0, n, size):
        yield begin, min(begin + size, n)


def _store_stats(root: Any, plan: _Plan) -> dict:
    """Coverage and label counts, read column by column in chunks."""
    n = plan.source.n_obs
    n_unmapped = 0
    regions = np.zeros(1, dtype=np.int64)
    labels = np.zeros(len(plan.categories), dtype=np.int64)
    for begin, end in _blocks(n, plan.chunk_size):
        counts = np.asarray(root["obs/scembed_n_regions"][begin:end], dtype=np.int64)
        n_unmapped += int((counts == 0).sum())
        found = np.bincount(counts)
        if len(found) > len(regions):
            regions = np.pad(regions, (0, len(found) - len(regions)))
        regions[: len(found)] += found
        if plan.categories:
            codes = np.asarray(root["obs/scembed_label/codes"][begin:end])
            labels += np.bincount(codes[codes >= 0], minlength=len(plan.categories))
    cumulative = np.cumsum(regions)
    middle = [(n + 1) // 2, n // 2 + 1]  # 1-based positions of the middle value(s)
    median = float(np.searchsorted(cumulative, middle).mean()) if n else 0.0
    stats = {"n_cells": n, "n_unmapped_cells": n_unmapped, "median_regions_per_cell": median}
    if plan.categories:
        stats["label_counts"] = {
            name: int(c) for name, c in zip(plan.categories, labels, strict=True) if c
        }
    return stats


# --------------------------------------------------------------------------- driver


@contextmanager
def _dask_client(scheduler: Any, n_workers: int, memory_limit: str | int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler is None:
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


def _run_chunks(
    client: Any,
    plan: _Plan,
    todo: list[int],
    mapping: PeakMapping,
    reference: Reference,
    report: ProgressCallback,
) -> list[dict]:
    from distributed import as_completed

    shared = _Mapping(
        np.asarray(mapping.matrix.indptr, dtype=np.int64),
        np.asarray(mapping.matrix.indices, dtype=np.int64),
    )
    shared_future = client.scatter(shared, broadcast=True)
    shipped = None if plan.reference_path else client.scatter(reference, broadcast=True)
    token = uuid.uuid4().hex[:12]
    futures = [
        client.submit(
            _project_chunk, plan, i, shared_future, shipped, key=f"scembed-chunk-{token}-{i}"
        )
        for i in todo
    ]
    results, cells, started = [], 0, time.perf_counter()
    try:
        for future in as_completed(futures):
            result = future.result()
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
    label_method: str = "classifier",
    ev: bool = True,
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
        As in :func:`~scembed_core.labeling.assign_labels` (the one label rule, also used
        by the in-memory pipeline and the app); class probabilities are written to
        ``obsm["scembed_label_probabilities"]`` in the order of
        ``uns["scembed"]["label_classes"]``.
    ev
        Also place the cells on the reference UMAP.
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
    from .reference import Reference, resolve_reference

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
    source, obs, var = _describe_input(input_path, layer)
    mapping = _peak_mapping(var, source, reference)
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
        categories = tuple(str(c) for c in names if c != UNASSIGNED) + (UNASSIGNED,)
    from .labeling import resolve_label_method

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
        from .annotate import mapping_distance_threshold

        threshold = mapping_distance_threshold(reference, int(min(k_neighbors, reference.n_cells)))
    plan = _Plan(
        source=source,
        out=str(out.resolve()),
        chunk_size=int(chunk_size),
        n_chunks=-(-source.n_obs // int(chunk_size)),
        reference_path=str(Path(folder).resolve()) if loadable else None,
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
        umap_epochs=_umap_epochs(reference, source.n_obs) if ev else None,
        analysis_dim=_analysis_dim(reference),
    )
    if plan.reference_path is not None:  # in-process (threaded) workers reuse this copy
        with _REFERENCES_LOCK:
            _REFERENCES.setdefault((plan.reference_path, trust), reference)

    stage = time.perf_counter()
    run = _fingerprint(plan, reference)
    resumed = _open_store(out, run, overwrite)
    if not resumed:
        _create_store(out, plan, obs, var, reference.model.dim, run)
    del obs
    done = chunk_markers(out)
    todo = [int(i) for i in np.flatnonzero(~done)]
    timings["prepare_store"] = time.perf_counter() - stage

    import zarr

    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    results: list[dict] = []
    stage = time.perf_counter()
    if todo:
        _drop_obs_columns(root, ["scembed_cluster", "scembed_cluster_label"])  # now stale
        report(0.0, f"Projecting {len(todo)} chunk(s) of {plan.chunk_size:,} cells")
        with _dask_client(scheduler, n_workers, memory_limit) as client:
            results = _run_chunks(client, plan, todo, mapping, reference, report)
    timings["chunks"] = time.perf_counter() - stage

    stage = time.perf_counter()
    workers: dict[str, int] = {}
    for result in results:
        workers[result["worker"]] = max(workers.get(result["worker"], 0), result["peak_rss_bytes"])
    computed = sum(r["n_cells"] for r in results)
    coverage = {**mapping.summary(), **_store_stats(root, plan)}
    warnings = mapping_warnings(mapping, reference.genome)
    if coverage["n_unmapped_cells"]:
        warnings.append(
            f"{coverage['n_unmapped_cells']:,} cell(s) cover no trained reference region; "
            "they get no embedding and are reported as Unassigned."
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
    params = {
        "reference": reference.name,
        "reference_genome": reference.genome,
        "label_key": plan.label_key,
        "label_method": plan.label_method,
        "k_neighbors": plan.k_neighbors,
        "min_confidence": plan.min_confidence,
        "max_mapping_distance": plan.max_mapping_distance,
        "chunk_size": plan.chunk_size,
        "input": plan.source.path,
        "ev": plan.ev,
    }
    stored_coverage = {k: v for k, v in coverage.items() if k != "label_counts"}
    scale = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    scale["workers"] = np.asarray(list(workers), dtype=object)  # addresses contain "/"
    scale["worker_peak_rss_bytes"] = np.asarray(list(workers.values()), dtype=np.int64)
    uns = {"params": params, "coverage": stored_coverage, "timings": timings, "scale": scale}
    if plan.label_classes:  # names may contain "/", so an array, not keys
        uns["label_classes"] = np.asarray(plan.label_classes, dtype=object)
    if "label_counts" in coverage:  # label names may contain "/", so not as keys
        counts = coverage["label_counts"]
        uns["label_counts"] = pd.DataFrame(
            {"label": list(counts), "n_cells": list(counts.values())}
        )
    _write_elem(root["uns"], "scembed", uns)
    _consolidate(out)
    report(1.0, "Projection done")
    return summary


# --------------------------------------------------------------------------- clustering


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def _rows_at(array: Any, rows: np.ndarray, block: int) -> np.ndarray:
    """Rows ``rows`` (sorted) of a 2-D array, reading one block of rows at a time."""
    parts = []
    for begin, end in _blocks(int(array.shape[0]), block):
        lo, hi = np.searchsorted(rows, [begin, end])
        if hi > lo:
            parts.append(np.asarray(array[begin:end], dtype=np.float32)[rows[lo:hi] - begin])
    return np.vstack(parts) if parts else np.empty((0, array.shape[1]), np.float32)


def cluster_large(
    embedding: str | Path | Any,
    *,
    n_sample: int = 50_000,
    resolution: float = 1.0,
    n_clusters: int | None = None,
    method: str = "louvain",
    n_neighbors: int = 15,
    seed: int = 0,
    chunk_size: int = 100_000,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Cluster millions of cells: Louvain on a uniform subsample, nearest centroid for the rest.

    A uniform random subsample of ``n_sample`` cells is clustered exactly as
    :mod:`~scembed_core.cluster` clusters a small dataset (cosine kNN graph, Louvain or
    Leiden at ``resolution``, or the resolution search for ``n_clusters``). Each cluster's
    centroid is the normalised mean of its cells' unit embeddings; every cell outside the
    sample joins the cluster whose centroid is most cosine-similar, read and assigned chunk
    by chunk. Sampled cells keep their graph label, so a dataset of at most ``n_sample``
    cells gets exactly the labels of full Louvain.

    Trade-off: memory and graph time depend on ``n_sample``, not on the number of cells
    (the assignment pass is linear and cheap), at three costs. A population rarer than a
    few cells in ``n_sample`` (frequency below ~1/``n_sample`` times the minimum cluster
    size) cannot form its own cluster and is absorbed by its nearest neighbour; centroid
    assignment draws straight (Voronoi) borders, so cells on the border of two
    non-convex clusters may land differently than full-graph Louvain would put them; and
    the meaning of ``resolution`` shifts slightly with graph size, so the same value gives
    similar but not identical granularity at another ``n_sample``. Raise ``n_sample``
    (memory ~ ``n_sample x n_neighbors``) for rare populations.

    Parameters
    ----------
    embedding
        An output store of :func:`project_out_of_core`, whose analysis space is clustered
        (``obsm["X_scembed_whitened"]``, else ``obsm["X_scembed"]``, as in the in-memory
        pipeline) and which receives ``obs["scembed_cluster"]`` and
        ``obs["scembed_cluster_label"]``; or any 2-D array-like that supports row slicing
        (numpy, zarr, h5py).
    n_sample
        Cells in the subsample that is clustered as a graph.
    resolution
        Louvain/Leiden resolution (ignored when ``n_clusters`` is given).
    n_clusters
        Search the resolution that gives this many clusters on the subsample.
    method
        ``"louvain"`` or ``"leiden"``.
    n_neighbors
        Neighbours in the subsample's kNN graph.
    seed
        Seeds the subsample and the community detection.
    chunk_size
        Cells read per step of the assignment pass.
    progress
        ``progress(fraction, message)`` callback.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` int64 cluster labels, 0 the largest cluster of the subsample; -1 for
        cells without an embedding.
    """
    from .cluster import build_knn_graph, cluster_graph, find_resolution

    if n_sample < 2:
        raise ParameterError(f"n_sample must be >= 2, got {n_sample}.")
    if chunk_size < 1:
        raise ParameterError(f"chunk_size must be >= 1, got {chunk_size}.")
    report = progress or (lambda fraction, message: None)
    root = None
    if isinstance(embedding, str | Path):
        import zarr

        root = zarr.open_group(str(embedding), mode="r+", use_consolidated=False)
        obsm = root["obsm"]
        array = obsm["X_scembed_whitened" if "X_scembed_whitened" in obsm else "X_scembed"]
    else:
        array = embedding
    n = int(array.shape[0])
    rng = np.random.default_rng(seed)
    sample = np.arange(n) if n <= n_sample else np.sort(rng.choice(n, n_sample, replace=False))
    report(0.0, f"Reading a subsample of {len(sample):,} cells")
    points = _rows_at(array, sample, chunk_size)
    report(0.2, "Clustering the subsample (kNN graph + community detection)")
    graph = build_knn_graph(points, n_neighbors, seed=seed)
    if n_clusters is not None:
        search = find_resolution(graph, n_clusters, method=method, seed=seed)
        sample_labels, resolution = search.labels, search.resolution
    else:
        sample_labels = cluster_graph(graph, resolution, method=method, seed=seed)
    k = int(sample_labels.max()) + 1 if (sample_labels >= 0).any() else 0
    unit = _unit(points[sample_labels >= 0])
    centroids = np.zeros((k, array.shape[1]), dtype=np.float32)
    np.add.at(centroids, sample_labels[sample_labels >= 0], unit)
    centroids = _unit(centroids)
    del points, unit

    labels = np.full(n, -1, dtype=np.int64)
    for step, (begin, end) in enumerate(_blocks(n, chunk_size)):
        block = np.asarray(array[begin:end], dtype=np.float32)
        valid = np.isfinite(block).all(axis=1)
        if k and valid.any():
            labels[begin:end][valid] = (_unit(block[valid]) @ centroids.T).argmax(axis=1)
        fraction = min(1.0, (step + 1) * chunk_size / max(n, 1))
        report(0.3 + 0.6 * fraction, "Assigning cells to clusters")
    labels[sample] = sample_labels
    if root is not None:
        _write_clusters(root, labels, k, chunk_size)
        params = {
            "method": method,
            "resolution": float(resolution),
            "n_clusters": k,
            "n_sample": int(len(sample)),
            "n_neighbors": n_neighbors,
            "seed": seed,
        }
        if "scembed" not in root["uns"]:
            _write_elem(root["uns"], "scembed", {})
        _write_elem(root["uns/scembed"], "clustering", params)
        _consolidate(Path(str(embedding)))
    report(1.0, "Clustering done")
    return labels


def _write_clusters(root: Any, labels: np.ndarray, k: int, chunk_size: int) -> None:
    """Store ``obs["scembed_cluster"]`` and, with labels, ``obs["scembed_cluster_label"]``."""
    from anndata.io import write_elem

    n = len(labels)
    codes = np.where(labels >= 0, labels, k)
    names = [str(i) for i in range(k)] + [UNASSIGNED]
    _drop_obs_columns(root, ["scembed_cluster", "scembed_cluster_label"])
    obs = root["obs"]
    rows = int(obs["scembed_n_regions"].chunks[0]) if "scembed_n_regions" in obs else chunk_size

    def categorical(name: str, categories: list[str], values: Callable) -> None:
        group = _set_attrs(obs.create_group(name), _CATEGORICAL)
        write_elem(group, "categories", np.asarray(categories, dtype=object))
        out = group.create_array("codes", shape=(n,), chunks=(rows,), dtype="int32", fill_value=-1)
        _set_attrs(out, _ARRAY)
        for begin, end in _blocks(n, rows):
            out[begin:end] = values(begin, end)

    categorical("scembed_cluster", names, lambda b, e: codes[b:e])
    added = ["scembed_cluster"]
    if "scembed_label" in obs:
        label_names = np.asarray(obs["scembed_label/categories"][:], dtype=object)
        counts = np.zeros((k + 1, len(label_names)), dtype=np.int64)
        for begin, end in _blocks(n, rows):
            lab = np.asarray(obs["scembed_label/codes"][begin:end])
            cl = codes[begin:end]
            keep = lab >= 0
            np.add.at(counts, (cl[keep], lab[keep]), 1)
        sizes = np.bincount(codes, minlength=k + 1)
        counts[k] = 0  # cells without an embedding form no cluster
        cluster_label, agreement = cluster_vote(counts, label_names, sizes)
        table = pd.DataFrame(
            {
                "cluster": names,
                "label": cluster_label.astype(str),
                "agreement": agreement,
                "n_cells": sizes,
            }
        )
        table = table[table["n_cells"] > 0].reset_index(drop=True)
        label_categories = sorted(set(cluster_label.astype(str)))
        lookup = np.searchsorted(label_categories, cluster_label.astype(str))
        categorical("scembed_cluster_label", label_categories, lambda b, e: lookup[codes[b:e]])
        added.append("scembed_cluster_label")
        if "scembed" not in root["uns"]:
            _write_elem(root["uns"], "scembed", {})
        _write_elem(root["uns/scembed"], "cluster_table", table)
    obs.attrs["column-order"] = list(obs.attrs.get("column-order", [])) + added


# --------------------------------------------------------------------------- reading results


def open_result(zarr_path: str | Path, *, max_points: int = 50_000, seed: int = 0) -> pd.DataFrame:
    """A random subsample of a store's per-cell results, for plotting (reads only those rows).

    Parameters
    ----------
    zarr_path
        An output store of :func:`project_out_of_core`.
    max_points
        At most this many cells (uniform random, in store order); all cells if fewer.
    seed
        Seeds the subsample.

    Returns
    -------
    pandas.DataFrame
        Indexed by cell name: ``umap_1``/``umap_2`` (when EV-projected) and every
        ``scembed_*`` obs column (categoricals keep their categories).
        ``frame.attrs["n_cells"]`` is the number of cells in the store and
        ``frame.attrs["n_shown"]`` the number of rows returned.
    """
    import zarr
    from anndata.io import read_elem

    if max_points < 1:
        raise ParameterError(f"max_points must be >= 1, got {max_points}.")
    root = zarr.open_group(str(zarr_path), mode="r")
    obs = root["obs"]
    names = obs[obs.attrs.get("_index", "_index")]
    n = int(names.shape[0])
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
    frame = pd.DataFrame(index=pd.Index(np.asarray(names.oindex[rows]).astype(object), name="cell"))
    if "X_scembed_umap" in root["obsm"]:
        coords = np.asarray(root["obsm/X_scembed_umap"].oindex[rows, :])
        frame["umap_1"], frame["umap_2"] = coords[:, 0], coords[:, 1]
    for column in obs.attrs.get("column-order", []):
        if not str(column).startswith("scembed_") or column not in obs:
            continue
        node = obs[column]
        if node.attrs.get("encoding-type") == "categorical":
            categories = read_elem(node["categories"])
            codes = np.asarray(node["codes"].oindex[rows])
            frame[column] = pd.Categorical.from_codes(codes, categories=categories)
        else:
            frame[column] = np.asarray(node.oindex[rows])
    frame.attrs["n_cells"] = n
    frame.attrs["n_shown"] = len(rows)
    return frame
