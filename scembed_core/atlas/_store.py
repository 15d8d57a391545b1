"""The output AnnData zarr store: skeleton, resume markers, run fingerprint, statistics."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ._plan import MARKERS_KEY, Plan

if TYPE_CHECKING:
    from ..reference import Reference

RUN_ATTR = "scembed-run"
#: The obs columns of clustering (dropped when a store is re-projected or re-clustered).
CLUSTER_COLUMNS = ["scembed_cluster", "scembed_cluster_label", "scembed_cluster_possibly_absent"]
#: Version of the store's layout; a store of another layout is not resumed.
STORE_LAYOUT = 2
ARRAY_ATTRS = {"encoding-type": "array", "encoding-version": "0.2.0"}
CATEGORICAL_ATTRS = {"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": False}


def _reference_identity(reference: Reference) -> str:
    import hashlib

    files = reference.manifest.get("files")
    if files:
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(reference.model.vectors).tobytes()).hexdigest()


def run_fingerprint(plan: Plan, reference: Reference) -> dict:
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
        "unknown_rate": -1.0 if plan.unknown_rate is None else plan.unknown_rate,
        "ev": plan.ev,
        "layout": STORE_LAYOUT,
    }


def set_attrs(node: Any, attrs: dict) -> Any:
    node.attrs.update(attrs)
    return node


def create_store(
    out: Path, plan: Plan, obs: pd.DataFrame, var: pd.DataFrame, dim: int, run: dict
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
        set_attrs(created, ARRAY_ATTRS)

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
        for name in ("scembed_label", "scembed_label_predicted"):
            group = set_attrs(root["obs"].create_group(name), CATEGORICAL_ATTRS)
            write_elem(group, "categories", np.asarray(plan.categories, dtype=object))
            array(group, "codes", (n,), "int32", -1)
        for name in ("scembed_label_confidence", "scembed_label_similarity"):
            array(root["obs"], name, (n,), "float32", np.nan)
        array(root["obs"], "scembed_unknown", (n,), "bool", False)
        array(root["obs"], "scembed_unknown_score", (n,), "float32", np.nan)
        shape = (n, len(plan.label_classes))
        array(root["obsm"], "scembed_label_probabilities", shape, "float32", np.nan)
        added += [
            "scembed_label",
            "scembed_label_predicted",
            "scembed_label_confidence",
            "scembed_label_similarity",
            "scembed_unknown",
            "scembed_unknown_score",
        ]
    order = list(root["obs"].attrs.get("column-order", []))
    root["obs"].attrs["column-order"] = order + added
    markers = root["uns"].create_array(
        "scembed_chunks_done", shape=(plan.n_chunks,), chunks=(1,), dtype="bool", fill_value=False
    )
    set_attrs(markers, ARRAY_ATTRS)
    root.attrs[RUN_ATTR] = run  # last: a store without it is not a (resumable) run


def open_store(out: Path, run: dict, overwrite: bool) -> bool:
    """Whether ``out`` holds a resumable run with the same fingerprint (else clear it)."""
    import zarr

    if not out.exists():
        return False
    try:
        group = zarr.open_group(str(out), mode="r", use_consolidated=False)
        previous = dict(group.attrs.get(RUN_ATTR) or {})
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
    """Return the per-chunk "done" markers of a run (True: the chunk's results are written)."""
    import zarr

    root = zarr.open_group(str(out_path), mode="r", use_consolidated=False)
    return np.asarray(root[MARKERS_KEY][:], dtype=bool)


def drop_obs_columns(root: Any, names: list[str]) -> None:
    obs = root["obs"]
    present = [name for name in names if name in obs]
    for name in present:
        del obs[name]
    if present:
        order = [c for c in obs.attrs.get("column-order", []) if c not in present]
        obs.attrs["column-order"] = order


def replace_elem(parent: Any, key: str, value: Any) -> None:
    """Write (or replace) one anndata element under a zarr group."""
    from anndata.io import write_elem

    from ..results import h5_plain

    if key in parent:
        del parent[key]
    write_elem(parent, key, h5_plain(value) if isinstance(value, dict) else value)


def consolidate(out: Path) -> None:
    import zarr

    zarr.consolidate_metadata(str(out), zarr_format=2)


def blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for begin in range(0, n, size):
        yield begin, min(begin + size, n)


def store_stats(root: Any, plan: Plan) -> dict:
    """Coverage and label counts, read column by column in chunks."""
    n = plan.source.n_obs
    n_unmapped = 0
    regions = np.zeros(1, dtype=np.int64)
    labels = np.zeros(len(plan.categories), dtype=np.int64)
    for begin, end in blocks(n, plan.chunk_size):
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
