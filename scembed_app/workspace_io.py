"""A tab's analysis as the files of a workspace, and back (no Streamlit import).

:mod:`scembed_app.workspaces` (the Streamlit side) keeps each analysis in a
:class:`scembed_app.workspace.Workspace`; this module converts between the values a tab
holds in session state (:class:`~scembed_app.uploads.LoadedDataset`,
:class:`~scembed_app.state.ProjectionRun`, the settings of :data:`state.WORKSPACE_SETTINGS`,
a :class:`~scembed_app.state.TrainedReference`) and what the workspace stores (an h5ad, arrays,
JSON, the trained bundle's zip). :func:`read_analysis` reads everything a restore needs in
one go; ``benchmarks/workspace.py`` times it.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from scembed_app import state
from scembed_app.uploads import LoadedDataset
from scembed_core.errors import ReferenceBundleError

__all__ = [
    "STATE_VERSION",
    "REFERENCE_ZIP",
    "StoredAnalysis",
    "plain",
    "settings_json",
    "settings_values",
    "dataset_meta",
    "dataset_from",
    "projection_key",
    "projection_meta",
    "run_from",
    "reference_identity",
    "app_spec",
    "trained_from_zip",
    "state_document",
    "read_analysis",
]

STATE_VERSION = 1
REFERENCE_ZIP = "reference.zip"  # the trained bundle, for a "session:NAME" reference
NO_TRUTH = state.NO_TRUTH  # the Annotation page's "no truth column" choice
#: A trained bundle read back from a workspace may expand to at most this much.
MAX_BUNDLE_BYTES = 2 * 2**30


@dataclass(frozen=True)
class StoredAnalysis:
    """Everything read from a workspace for a restore (nothing checked against a reference).

    Attributes
    ----------
    state
        ``state.json``: page, settings, reference identity.
    dataset
        The dataset as the tab held it, or None.
    run
        The projection as the tab held it, or None.
    results
        ``{"key", "clusters", "labels"}`` as :data:`state.STORED_RESULTS` holds it, or None.
    reference_zip
        The trained bundle (a ``session:`` reference only), or None.
    """

    state: dict
    dataset: LoadedDataset | None
    run: state.ProjectionRun | None
    results: dict | None
    reference_zip: bytes | None


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, arrays and tuples as JSON types."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- settings ---------------------------------------------------------------------------
def settings_json(values: Mapping[str, Any]) -> dict:
    """The tab's settings (:data:`state.WORKSPACE_SETTINGS`) as JSON, normalised.

    Values the pages fill in on their own are left out, so that merely looking at a shared
    analysis never counts as a change: identity entries of the label map, the "(none)" truth
    column, and the maximum mapping distance while the limit is off (the Annotation page
    sets its default from the reference).
    """
    out: dict[str, Any] = {}
    for key in state.WORKSPACE_SETTINGS:
        value = values.get(key)
        if key == state.RESOLUTION_CURVE and value is not None:
            value = {str(c): plain(value[c].to_numpy()) for c in value.columns}
        elif key == state.LABEL_MAP:
            value = {str(k): str(v) for k, v in (value or {}).items() if k != v}
        elif (key == state.TRUTH_KEY and value == NO_TRUTH) or (
            key == state.MAX_DISTANCE and not values.get(state.LIMIT_DISTANCE)
        ):
            value = None
        out[key] = plain(value)
    return out


def settings_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Session-state values from :func:`settings_json`'s output (unknown keys ignored)."""
    out: dict[str, Any] = {}
    for key in state.WORKSPACE_SETTINGS:
        if key not in settings:
            continue
        value = settings[key]
        if key == state.RESOLUTION_CURVE and value is not None:
            value = pd.DataFrame(dict(value))
        elif key == state.CLUSTER_SEARCH and value is not None:
            value = tuple(value)
        elif key == state.LABEL_MAP:
            value = dict(value or {})
        elif key in (state.RESOLUTION, state.MIN_CONFIDENCE) and value is not None:
            value = float(value)
        out[key] = value
    return out


# --- dataset and projection -------------------------------------------------------------------
def dataset_meta(dataset: LoadedDataset) -> dict:
    """What the workspace keeps beside the dataset's h5ad."""
    return plain(
        {
            "name": dataset.name,
            "digest": dataset.digest,
            "n_bytes": int(dataset.n_bytes),
            "liftover": dataset.liftover,
            "original_digest": dataset.original.digest if dataset.original else None,
            "sha256": dataset.sha256,
        }
    )


def dataset_from(adata: Any, meta: Mapping[str, Any]) -> LoadedDataset:
    """The :class:`LoadedDataset` a tab held (a lifted one without its pre-liftover copy)."""
    return LoadedDataset(
        name=str(meta["name"]),
        digest=str(meta["digest"]),
        adata=adata,
        n_bytes=int(meta.get("n_bytes") or 0),
        liftover=dict(meta["liftover"]) if meta.get("liftover") else None,
        sha256=str(meta["sha256"]) if meta.get("sha256") else None,
    )


def projection_key(run: state.ProjectionRun | None) -> str | None:
    """What identifies a projection's content (re-projecting the same gives the same key)."""
    if run is None:
        return None
    return f"{run.cache_key}|map={run.projection.umap is not None}"


def projection_meta(run: state.ProjectionRun) -> dict:
    """What the workspace keeps beside the projection's arrays."""
    return plain(
        {
            "dataset_digest": run.dataset_digest,
            "reference_key": run.reference_key,
            "seconds": float(run.seconds),
            "stage_seconds": dict(run.stage_seconds),
            "n_cells": int(run.n_cells),
            "n_projected": int(run.n_projected),
        }
    )


def run_from(projection: Any, meta: Mapping[str, Any]) -> state.ProjectionRun:
    """The :class:`ProjectionRun` a tab held, around a projection read back (no recompute)."""
    return state.ProjectionRun(
        dataset_digest=str(meta["dataset_digest"]),
        reference_key=str(meta["reference_key"]),
        projection=projection,
        n_cells=int(meta["n_cells"]),
        n_projected=int(meta["n_projected"]),
        seconds=float(meta.get("seconds") or 0.0),
        stage_seconds={str(k): float(v) for k, v in (meta.get("stage_seconds") or {}).items()},
    )


# --- reference ---------------------------------------------------------------------------------
def reference_identity(spec: str, reference: Any, trained: Any = None) -> dict:
    """The reference's identity for ``state.json``: spec, name, genome, fingerprint.

    ``spec`` is the tab's spec; a folder becomes ``folder:<path>``. For a reference trained in
    the tab, ``trained`` (its :class:`~scembed_app.state.TrainedReference`) adds the label
    column and training parameters shown on the Train page.
    """
    builtin_or_named = spec == "default" or spec.startswith(("hf:", "session:"))
    kind = spec if builtin_or_named else f"folder:{spec}"
    identity = {
        "spec": kind,
        "name": str(reference.name),
        "genome": str(reference.genome),
        "fingerprint": str(reference.fingerprint),
    }
    revision = (reference.manifest or {}).get("revision")
    if revision:
        identity["revision"] = str(revision)
    if trained is not None:
        identity["trained"] = plain({"label_key": trained.label_key, "params": trained.params})
    return identity


def app_spec(identity: Mapping[str, Any]) -> str:
    """The tab's reference spec for a stored identity (``folder:<path>`` -> ``<path>``)."""
    spec = str(identity.get("spec") or "default")
    return spec.removeprefix("folder:")


def trained_from_zip(name: str, data: bytes, identity: Mapping[str, Any]) -> state.TrainedReference:
    """A trained reference from the bundle zip the Train page built (checksums verified).

    The zip was written by this app into the workspace; it is still read defensively: only
    plain file names are extracted (no paths, no links) and at most
    :data:`MAX_BUNDLE_BYTES`. The bundle is loaded through the normal loader, untrusted.

    Raises
    ------
    ReferenceBundleError
        A damaged or oversized zip, or a bundle that does not load.
    """
    from scembed_core.reference import load_bundle

    with tempfile.TemporaryDirectory(prefix="scembed-restore-") as tmp:
        folder = Path(tmp) / "bundle"
        folder.mkdir()
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = [i for i in archive.infolist() if not i.is_dir()]
                if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
                    raise ReferenceBundleError(f"The stored bundle of {name!r} is too large.")
                for info in infos:
                    base = PurePosixPath(info.filename.replace("\\", "/")).name
                    if not base or base.startswith(".") or (info.external_attr >> 28) == 0o12:
                        raise ReferenceBundleError(
                            f"The stored bundle of {name!r} holds an unexpected entry."
                        )
                    (folder / base).write_bytes(archive.read(info))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ReferenceBundleError(
                f"The stored bundle of {name!r} is damaged ({exc})."
            ) from exc
        reference = dataclasses.replace(load_bundle(folder, trust=False), path=None)
    extra = identity.get("trained") or {}
    return state.TrainedReference(
        name=name,
        key=f"trained:{name}:{reference.fingerprint}",  # as the Train page builds it
        reference=reference,
        label_key=str(extra.get("label_key") or reference.default_label_key or ""),
        params=dict(extra.get("params") or {"epochs": 0, "seed": 0, "reproducible": False}),
        bundle_zip=data,
    )


# --- the whole analysis ------------------------------------------------------------------------
def state_document(
    *, page: str | None, settings: dict, reference: dict | None, dataset: str | None
) -> dict:
    """``state.json``: the page, the settings, the reference identity, the dataset digest."""
    return {
        "version": STATE_VERSION,
        "page": page,
        "settings": settings,
        "reference": reference,
        "dataset_digest": dataset,
    }


def read_analysis(workspace: Any) -> StoredAnalysis:
    """Read everything a restore needs from ``workspace`` (no projection is recomputed)."""
    doc = workspace.read_state() or {}
    dataset = None
    if workspace.has_dataset():
        adata, meta = workspace.read_dataset()
        dataset = dataset_from(adata, meta)
    run = None
    stored = workspace.read_projection()
    if stored is not None and dataset is not None:
        projection, meta = stored
        if meta.get("dataset_digest") == dataset.digest:  # not a projection of an older upload
            run = run_from(projection, meta)
    results = None
    raw = workspace.read_results() if run is not None else None
    if raw is not None:
        results = {
            "key": raw.get("key") or {},
            "clusters": raw["clusters"],
            "labels": raw.get("labels"),
        }
    identity = doc.get("reference") or {}
    reference_zip = None
    if str(identity.get("spec", "")).startswith("session:"):
        reference_zip = workspace.read_bytes(REFERENCE_ZIP)
    return StoredAnalysis(
        state=doc, dataset=dataset, run=run, results=results, reference_zip=reference_zip
    )
