"""Projections and result tables as plain arrays plus JSON, and back, bit for bit.

Nothing here pickles: arrays go to ``.npz`` files read with ``allow_pickle=False`` (strings
as fixed-width unicode arrays), everything else to JSON. :func:`projection_arrays` and
:func:`projection_from_arrays` are exact inverses: every array keeps its dtype, shape and
bytes, so a restored :class:`~scembed_core.project.Projection` equals the one written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scembed_core.errors import WorkspaceError

if TYPE_CHECKING:  # the engine's projection (numba, scipy) loads when a projection is read
    from scembed_core.project import Projection

__all__ = [
    "projection_arrays",
    "projection_from_arrays",
    "frame_arrays",
    "frame_from_arrays",
    "json_plain",
]

_OPTIONAL = ("umap", "mapping_distance", "mapping_outlier", "analysis")
_MAP_OPTIONAL = ("frames", "frame_epochs", "sample")
_SPARSE = ("csr_matrix", "csr_array")


def json_plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists (for JSON)."""
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _put_sparse(arrays: dict, prefix: str, matrix: Any) -> dict:
    kind = type(matrix).__name__
    if kind not in _SPARSE:
        raise WorkspaceError(f"Cannot store a {kind} sparse matrix (expected CSR).")
    arrays[f"{prefix}.data"] = matrix.data
    arrays[f"{prefix}.indices"] = matrix.indices
    arrays[f"{prefix}.indptr"] = matrix.indptr
    return {"class": kind, "shape": [int(n) for n in matrix.shape]}


def _get_sparse(arrays: dict, prefix: str, info: dict) -> Any:
    import scipy.sparse as sp

    data = arrays[f"{prefix}.data"]
    indices, indptr = arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]
    if info["class"] not in _SPARSE:
        raise WorkspaceError(f"Cannot read a {info['class']!r} sparse matrix (expected CSR).")
    matrix = getattr(sp, info["class"])(tuple(info["shape"]), dtype=data.dtype)
    # Assigned directly: the constructor may narrow the index dtype, which would change bytes.
    matrix.data, matrix.indices, matrix.indptr = data, indices, indptr
    return matrix


def projection_arrays(projection: Projection) -> tuple[dict[str, np.ndarray], dict]:
    """Split a projection into ``{name: array}`` (for ``np.savez``) and a JSON document."""
    arrays: dict[str, np.ndarray] = {"embedding": projection.embedding}
    doc: dict[str, Any] = {"present": []}
    for name in _OPTIONAL:
        value = getattr(projection, name)
        if value is not None:
            arrays[name] = value
            doc["present"].append(name)
    if projection.neighbors is not None:
        arrays["neighbors.indices"], arrays["neighbors.distances"] = projection.neighbors
        doc["present"].append("neighbors")
    coverage = projection.coverage
    doc["coverage"] = {
        "signal": _put_sparse(arrays, "coverage.signal", coverage.signal),
        "matrix": _put_sparse(arrays, "coverage.mapping.matrix", coverage.mapping.matrix),
        "renamed_chromosomes": dict(coverage.mapping.renamed_chromosomes),
        "unknown_chromosomes": list(coverage.mapping.unknown_chromosomes),
        "warnings": list(coverage.warnings),
    }
    arrays["coverage.n_regions_per_cell"] = coverage.n_regions_per_cell
    doc["timings"] = {str(k): float(v) for k, v in projection.timings.items()}
    transform = projection.map_transform
    if transform is not None:
        arrays["map.coords"], arrays["map.initial"] = transform.coords, transform.initial
        present = []
        for name in _MAP_OPTIONAL:
            value = getattr(transform, name)
            if value is not None:
                arrays[f"map.{name}"] = value
                present.append(name)
        doc["map_transform"] = {"n_epochs": int(transform.n_epochs), "present": present}
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise WorkspaceError(f"Projection field {name!r} is not a numeric array.")
    return arrays, doc


def projection_from_arrays(arrays: dict[str, np.ndarray], doc: dict) -> Projection:
    """Inverse of :func:`projection_arrays`."""
    from scembed_core.evmap import MapTransform
    from scembed_core.project import Coverage, Projection
    from scembed_core.regions import PeakMapping

    cov = doc["coverage"]
    mapping = PeakMapping(
        _get_sparse(arrays, "coverage.mapping.matrix", cov["matrix"]),
        renamed_chromosomes=dict(cov["renamed_chromosomes"]),
        unknown_chromosomes=list(cov["unknown_chromosomes"]),
    )
    coverage = Coverage(
        mapping,
        _get_sparse(arrays, "coverage.signal", cov["signal"]),
        arrays["coverage.n_regions_per_cell"],
        list(cov["warnings"]),
    )
    present = set(doc["present"])
    transform = None
    if "map_transform" in doc:
        info = doc["map_transform"]
        transform = MapTransform(
            arrays["map.coords"],
            arrays["map.initial"],
            int(info["n_epochs"]),
            **{name: arrays[f"map.{name}"] for name in info["present"]},
        )
    neighbors = None
    if "neighbors" in present:
        neighbors = (arrays["neighbors.indices"], arrays["neighbors.distances"])
    return Projection(
        embedding=arrays["embedding"],
        coverage=coverage,
        neighbors=neighbors,
        timings=dict(doc["timings"]),
        map_transform=transform,
        **{name: arrays[name] for name in _OPTIONAL if name in present},
    )


def frame_arrays(frame: pd.DataFrame, prefix: str) -> tuple[dict[str, np.ndarray], dict]:
    """A data frame as arrays (strings as unicode arrays, categoricals as codes) and JSON."""
    arrays: dict[str, np.ndarray] = {}
    columns = []
    for i, (name, series) in enumerate(frame.items()):
        key = f"{prefix}.{i}"
        column = {"name": str(name)}
        if isinstance(series.dtype, pd.CategoricalDtype):
            arrays[key] = series.cat.codes.to_numpy()
            arrays[key + ".categories"] = np.asarray(series.cat.categories.astype(str), dtype=str)
            column.update(kind="category", ordered=bool(series.cat.ordered))
        elif series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            values = series.to_numpy(dtype=object)
            missing = pd.isna(values)
            arrays[key] = np.asarray(
                ["" if m else str(v) for v, m in zip(values, missing, strict=True)], dtype=str
            ).reshape(len(values))
            if missing.any():
                arrays[key + ".missing"] = missing
            column["kind"] = "str"
        else:
            arrays[key] = series.to_numpy()
            if arrays[key].dtype.hasobject:
                raise WorkspaceError(f"Column {name!r} holds objects that cannot be stored.")
            column["kind"] = "array"
        columns.append(column)
    doc: dict[str, Any] = {"columns": columns, "n_rows": len(frame)}
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        doc["index"] = "range"
    else:
        arrays[prefix + ".index"] = np.asarray(frame.index.astype(str), dtype=str)
        doc["index"] = "str"
    doc["index_name"] = frame.index.name
    return arrays, doc


def frame_from_arrays(arrays: dict[str, np.ndarray], doc: dict, prefix: str) -> pd.DataFrame:
    """Inverse of :func:`frame_arrays`."""
    n = int(doc["n_rows"])
    index = pd.RangeIndex(n) if doc["index"] == "range" else pd.Index(arrays[prefix + ".index"])
    index = index.astype(object) if doc["index"] == "str" else index
    index.name = doc.get("index_name")
    data = {}
    for i, column in enumerate(doc["columns"]):
        key = f"{prefix}.{i}"
        if column["kind"] == "category":
            categories = arrays[key + ".categories"].astype(object)
            data[column["name"]] = pd.Categorical.from_codes(
                arrays[key], categories, ordered=column["ordered"]
            )
        elif column["kind"] == "str":
            values = arrays[key].astype(object)
            if key + ".missing" in arrays:
                values[arrays[key + ".missing"]] = None
            data[column["name"]] = values
        else:
            data[column["name"]] = arrays[key]
    return pd.DataFrame(data, index=index)
