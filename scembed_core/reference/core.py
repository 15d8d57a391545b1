"""The :class:`Reference`: region model plus (optionally) annotated reference cells, frozen."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._paths import DEFAULT_REFERENCE_DIR, DEMO_QUERY_PATH, PACKAGE_DATA
from ..evmap import MapParams
from ..knn import build_cell_index, index_ef_construction
from ..model import RegionModel, Whitening

__all__ = [
    "Reference",
    "SCHEMA_VERSION",
    "DEFAULT_REFERENCE_DIR",
    "DEMO_QUERY_PATH",
    "PACKAGE_DATA",
]

SCHEMA_VERSION = 1


@dataclass(frozen=True, eq=False)
class Reference:
    """A loaded reference: region model plus (optionally) annotated reference cells.

    A region-only reference (e.g. a geniml model from the hub) supports E-projection;
    one with cells, a UMAP model and labels supports EV-projection and label transfer.

    A reference is shared by every session of an app server, so it is immutable once
    built: the kNN index over the reference cells is built (or, for the built-in bundle,
    read) when the object is made, never lazily on first use, and updates such as
    :func:`save_reference` return a new object (``dataclasses.replace``).
    """

    model: RegionModel
    cells: Any = None  # anndata.AnnData with obsm X_scembed, X_umap
    map_params: MapParams | None = None
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    index: Any = None  # cosine index over analysis-space reference cells (built if None)
    whitening: Whitening | None = None
    label_model: Any = None  # scembed_core.labels.classifier.LabelModel (None: kNN vote only)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest", dict(self.manifest))
        if self.cells is not None and self.index is None:
            space = self.cell_space  # the build's rule: the same graph as when it was built
            index = build_cell_index(space, ef_construction=index_ef_construction(len(space)))
            object.__setattr__(self, "index", index)
        object.__setattr__(self, "_memo_lock", threading.Lock())
        object.__setattr__(self, "_memo", {})

    def memoized(self, key: tuple, compute: Any) -> Any:
        """``compute()`` once per ``key`` for this reference (derived, read-only values).

        Used for values derived from the frozen reference (e.g. its own mapping-distance
        quantiles at another ``k``); thread-safe.
        """
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of everything results computed with this reference depend on.

        A bundle's manifest lists the sha256 of each of its files, so the manifest (with
        the name, labels, parameters and that file map) is hashed; a reference that was
        built in memory and never saved also hashes its arrays: region vectors, trained
        mask, universe, whitening, the reference cells' embeddings, map and label columns.
        Cache keys of per-dataset results use it, so two references that differ in any
        of these never share a cached result.
        """
        digest = hashlib.sha256()
        digest.update(json.dumps(self.manifest, sort_keys=True, default=str).encode())
        if not self.manifest.get("files"):
            universe = self.model.universe
            arrays = [self.model.vectors, self.model.trained, universe.start, universe.end]
            digest.update("\t".join(universe.chrom).encode())
            if self.whitening is not None:
                arrays += [self.whitening.mean, self.whitening.matrix]
            if self.label_model is not None:
                lm = self.label_model
                arrays += [lm.mean, lm.scale, lm.coef, lm.intercept]
                digest.update(repr((lm.label_key, lm.classes, lm.params, lm.temperature)).encode())
            if self.cells is not None:
                arrays += [np.asarray(v) for _, v in sorted(self.cells.obsm.items())]
                for column in self.cells.obs.columns:
                    digest.update(column.encode())
                    digest.update("\t".join(self.cells.obs[column].astype(str)).encode())
            for array in arrays:
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def analysis_space(self, embedding: np.ndarray) -> np.ndarray:
        """Map E-projection embeddings to the space used for kNN, clustering and the map."""
        if self.whitening is None:
            return np.asarray(embedding, dtype=np.float32)
        return self.whitening.transform(embedding)

    @property
    def cell_space(self) -> np.ndarray:
        """Reference cells in the analysis space."""
        return self.analysis_space(np.asarray(self.cells.obsm["X_scembed"]))

    @property
    def name(self) -> str:
        """Display name."""
        return str(self.manifest.get("name") or (self.path.name if self.path else "reference"))

    @property
    def genome(self) -> str:
        """Genome build, e.g. ``hg19``."""
        return str(self.manifest.get("genome") or self.model.metadata.get("genome") or "unknown")

    @property
    def n_cells(self) -> int:
        """Number of reference cells (0 for a region-only model)."""
        return 0 if self.cells is None else int(self.cells.n_obs)

    @property
    def n_regions(self) -> int:
        """Number of universe regions."""
        return len(self.model.universe)

    @property
    def label_keys(self) -> list[str]:
        """The ``obs`` columns of the reference cells that hold labels."""
        if self.cells is None:
            return []
        keys = self.manifest.get("label_keys") or []
        return [k for k in keys if k in self.cells.obs]

    @property
    def default_label_key(self) -> str | None:
        """The label column used for transfer unless another is chosen."""
        keys = self.label_keys
        return keys[0] if keys else None

    @property
    def can_ev_project(self) -> bool:
        """Whether new cells can be placed on this reference's UMAP map."""
        return (
            self.map_params is not None and self.cells is not None and "X_umap" in self.cells.obsm
        )

    @property
    def map_coords(self) -> np.ndarray:
        """``(n_cells, 2)`` float32 coordinates of the reference cells on the map."""
        return np.asarray(self.cells.obsm["X_umap"], dtype=np.float32)

    @property
    def can_transfer_labels(self) -> bool:
        """Whether the reference carries labelled cells for kNN transfer."""
        return self.cells is not None and bool(self.label_keys)

    def label_counts(self, key: str | None = None) -> pd.Series:
        """Count the reference cells per label."""
        key = key or self.default_label_key
        if key is None:
            return pd.Series(dtype=int)
        return self.cells.obs[key].astype(str).value_counts()
