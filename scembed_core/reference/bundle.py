"""Reference bundle folders: write, read and verify (sha256 of every file), zip for download.

Reference bundles: region embeddings, reference cells, their map and a kNN index.

A bundle is a folder::

    manifest.json        schema/library version, genome, parameters, labels, sha256 of files
    universe.bed         the region vocabulary (row i = region i)
    region_vectors.npy   (n_regions, dim) float32 region embeddings (no pickle)
    regions_trained.npy  bool mask of regions with learned vectors
    cells.h5ad           reference cells: obsm X_scembed / X_umap and label columns in obs
    whitening_mean.npy   mean of the reference cell embeddings (analysis space, see Whitening)
    whitening_matrix.npy (dim, n_components) whitening projection fitted on the reference cells
    knn_index.bin        hnswlib cosine index over the whitened reference cell embeddings
                         (parsed only for the built-in bundle; rebuilt from the stored cell
                         vectors for any other, since hnswlib's loader trusts its input)
    map.json             the reference map's transform parameters (see scembed_core.evmap);
                         the map itself is obsm X_umap of cells.h5ad
    label_model*.npy     label classifier arrays + label_model.json (see label_model.py)
    map_coords.npy, map_label_codes.npy, map_labels.json
                         the map and label columns again, compact and memory-mappable
                         (scembed_core.compact: the landing page reads them without anndata)

No file is a pickle, so a bundle from anywhere opens without trust. Bundles of the previous
format carried a pickled umap-learn model (``umap_model.joblib``): it is never unpickled; the
map is read from ``cells.h5ad`` and placed with umap-learn's default curve (the parameters
every such bundle was fitted with), with a note in ``Reference.notes``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._kernels import POOLING_METHODS
from .._version import __version__
from ..errors import (
    InputFormatError,
    MemoryBudgetError,
    ReferenceBundleError,
    ScEmbedDeprecationWarning,
)
from ..evmap import MapParams
from ..knn import load_cell_index
from ..model import RegionModel, Whitening
from ..regions import GenomicRegions
from .core import DEFAULT_REFERENCE_DIR, SCHEMA_VERSION, Reference
from .files import bundle_file

_FILES = {
    "universe": "universe.bed",
    "vectors": "region_vectors.npy",
    "trained": "regions_trained.npy",
    "cells": "cells.h5ad",
    "index": "knn_index.bin",
    "map": "map.json",
    "whitening_mean": "whitening_mean.npy",
    "whitening_matrix": "whitening_matrix.npy",
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_reference(reference: Reference, folder: str | Path) -> Reference:
    """Write a reference bundle (see the module docstring for the layout).

    Parameters
    ----------
    reference
        The reference to save (left unchanged).
    folder
        Target folder (created; existing bundle files are overwritten). No file written
        is a pickle.

    Returns
    -------
    A new :class:`Reference` equal to ``reference`` with ``path`` set to the folder and
    the written manifest (with the sha256 of every file).
    """
    import anndata as ad

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = reference.model
    model.universe.write_bed(folder / _FILES["universe"])
    np.save(folder / _FILES["vectors"], model.vectors, allow_pickle=False)
    np.save(folder / _FILES["trained"], model.trained, allow_pickle=False)
    written = ["universe", "vectors", "trained"]
    if reference.cells is not None:
        cells = reference.cells
        slim = ad.AnnData(
            obs=cells.obs.copy(), obsm={k: np.asarray(v) for k, v in cells.obsm.items()}
        )
        for column in slim.obs.columns:
            if slim.obs[column].dtype == object:
                slim.obs[column] = slim.obs[column].astype(str)
        slim.write_h5ad(folder / _FILES["cells"], compression="gzip")
        written.append("cells")
        if hasattr(reference.index, "save_index"):
            reference.index.save_index(str(folder / _FILES["index"]))
            written.append("index")
    if reference.whitening is not None:
        np.save(folder / _FILES["whitening_mean"], reference.whitening.mean, allow_pickle=False)
        np.save(folder / _FILES["whitening_matrix"], reference.whitening.matrix, allow_pickle=False)
        written += ["whitening_mean", "whitening_matrix"]
    if reference.map_params is not None:
        (folder / _FILES["map"]).write_text(json.dumps(reference.map_params.to_dict(), indent=2))
        written.append("map")
    for stale in _LEGACY_PICKLES:  # an older bundle rewritten in place loses its pickle
        (folder / stale).unlink(missing_ok=True)
    extra: list[str] = []
    if reference.cells is not None and "X_umap" in reference.cells.obsm:
        from ..compact import write_compact_map  # the landing page's map, without anndata

        extra += write_compact_map(folder, reference.cells, reference.label_keys)
    if reference.label_model is not None:
        from ..labels.classifier import save_label_model

        extra += save_label_model(reference.label_model, folder)
    manifest = dict(reference.manifest)
    profiles = None if reference.cells is None else reference.cells.uns.get("scembed_type_profiles")
    if profiles is not None:  # built in this process (labels/second_opinion.py)
        from ..labels.second_opinion import save_type_profiles

        extra += save_type_profiles(profiles, folder)
        manifest["type_profiles"] = profiles.manifest_entry()
    manifest.update(
        {
            "schema_version": SCHEMA_VERSION,
            "library": "scembed_core",
            "library_version": __version__,
            "n_regions": len(model.universe),
            "embedding_dim": model.dim,
            "n_cells": reference.n_cells,
            "genome": reference.genome,
            "pooling": model.pooling,
            "files": {
                name: _sha256(folder / name) for name in [_FILES[k] for k in written] + extra
            },
        }
    )
    manifest.setdefault("name", folder.name)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return dataclasses.replace(reference, manifest=manifest, path=folder)


def _read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise ReferenceBundleError(
            f"{folder} is not a reference bundle: manifest.json is missing. Expected a folder "
            "written by `python -m scembed_core train` or a geniml model folder."
        )
    bundle_file(folder, "manifest.json", what="The bundle")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ReferenceBundleError(
            f"manifest.json in {folder.name} is {path.stat().st_size:,} bytes; a bundle's "
            f"manifest is at most {_MAX_MANIFEST_BYTES:,}."
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ReferenceBundleError(f"manifest.json in {folder} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ReferenceBundleError(
            f"manifest.json must hold a JSON object, not {type(manifest).__name__}."
        )
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReferenceBundleError(
            f"Bundle schema version {str(version)[:20]!r} is not supported (this library reads "
            f"version {SCHEMA_VERSION}); rebuild the bundle with this version of scembed_core."
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, str) and len(v) == 64 for v in files.values()
    ):
        raise ReferenceBundleError(
            "manifest.json: 'files' must map each file name to its sha256 (64 hex digits)."
        )
    for name in files:  # every name is checked before any file is opened
        bundle_file(folder, name)
    return manifest


#: A manifest lists a handful of names and parameters; anything larger is not one.
_MAX_MANIFEST_BYTES = 1 << 20


def _verify_checksums(folder: Path, manifest: dict) -> None:
    files = manifest["files"]
    for required in (_FILES["universe"], _FILES["vectors"], _FILES["trained"]):
        if required not in files:
            raise ReferenceBundleError(f"manifest.json does not list the required file {required}.")
    for name, expected in files.items():
        if name in _LEGACY_PICKLES:
            continue  # never read, so not checked either
        path = bundle_file(folder, name)
        if not path.is_file():
            raise ReferenceBundleError(
                f"Bundle file {name} is listed in manifest.json but missing."
            )
        if _sha256(path) != expected.lower():
            raise ReferenceBundleError(
                f"Checksum mismatch for {name}: the file does not have the sha256 manifest.json "
                "lists. The bundle is corrupt or was modified; download it again."
            )


#: Pickles written by earlier versions (never unpickled; deleted when a bundle is re-saved).
_LEGACY_PICKLES = ("umap_model.joblib",)


#: umap-learn's curve for its default ``min_dist=0.1, spread=1.0`` (``find_ab_params``), the
#: settings every earlier bundle's map was fitted with.
_DEFAULT_AB = (1.5769434602697652, 0.8950608778515733)


def _read_map(folder: Path, files: dict, cells: Any) -> tuple[MapParams | None, list[str]]:
    """``map.json``'s parameters (or umap's default curve for a previous-format bundle)."""
    params = None
    notes: list[str] = []
    if _FILES["map"] in files:
        try:
            data = json.loads((folder / _FILES["map"]).read_text())
        except ValueError as exc:
            raise ReferenceBundleError(f"map.json in {folder} is not valid JSON: {exc}") from exc
        params = MapParams.from_dict(data)
    legacy = [name for name in _LEGACY_PICKLES if name in files or (folder / name).is_file()]
    if legacy and params is None and cells is not None:
        a, b = _DEFAULT_AB
        params = MapParams(a=a, b=b, fit={"min_dist": 0.1, "spread": 1.0, "metric": "euclidean"})
    if legacy:
        notes.append(
            f"This bundle was written by an earlier version and carries a pickled UMAP model "
            f"({', '.join(legacy)}). It was not loaded (pickles can run code); the map comes "
            "from cells.h5ad and new cells are placed by scEmbed's own transform. Re-save the "
            "bundle to drop the file."
        )
    if params is not None and cells is not None:
        coords = cells.obsm.get("X_umap")
        if coords is None:
            raise ReferenceBundleError(
                "The bundle has map.json but cells.h5ad has no obsm['X_umap']."
            )
        coords = np.asarray(coords)
        if coords.shape != (int(cells.n_obs), 2) or not np.isfinite(coords).all():
            raise ReferenceBundleError(
                f"obsm['X_umap'] of cells.h5ad must be finite ({int(cells.n_obs)}, 2) map "
                f"coordinates, got shape {coords.shape}."
            )
    if params is not None and cells is None:
        raise ReferenceBundleError("The bundle has map.json but no reference cells (cells.h5ad).")
    return params, notes


def load_array(folder: Path, name: str) -> np.ndarray:
    """Load a numeric ``.npy`` file of the bundle (never a pickle); typed error if unreadable."""
    path = bundle_file(folder, name)
    try:
        with open(path, "rb") as handle:  # the header's shape must fit the file's bytes
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
            declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if dtype.hasobject or declared > path.stat().st_size - handle.tell():
                raise ValueError(f"declares {declared:,} bytes, more than the file holds")
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ReferenceBundleError(
            f"{name} of the bundle is not a readable numeric array ({type(exc).__name__}); "
            "object arrays (pickles) are refused. Rebuild or download the bundle again."
        ) from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise ReferenceBundleError(f"{name} of the bundle holds {array.dtype}, not numbers.")
    return array


def _read_cells(path: Path) -> Any:
    """``cells.h5ad``: its declared sizes checked against the memory budget, then read."""
    import anndata as ad

    from ..io import check_h5_budget

    try:
        check_h5_budget(path, what=f"the bundle's {path.name}")
        return ad.read_h5ad(path)
    except MemoryBudgetError:
        raise
    except Exception as exc:  # h5py and anndata fail in many ways on a damaged file
        raise ReferenceBundleError(
            f"{path.name} of the bundle could not be read ({type(exc).__name__}); it is "
            "truncated or corrupt. Download the bundle again."
        ) from exc


def _is_builtin(folder: Path) -> bool:
    return folder.resolve() == DEFAULT_REFERENCE_DIR.resolve()


def load_bundle(
    folder: str | Path, *, trust: bool = False, compact_cells: bool = False
) -> Reference:
    """Load one reference bundle folder, validating manifest version and checksums.

    :func:`scembed_core.load_reference` is the loader for any spec (``"default"``, a
    bundle or geniml folder, a hub model); this one reads a scEmbed bundle only.

    Parameters
    ----------
    folder
        Bundle folder.
    trust
        Accepted for symmetry with geniml folders (whose gensim ``model.bin`` needs it);
        a bundle has nothing it would unlock: nothing is unpickled, and only the built-in
        bundle's binary kNN index is parsed (any other is rebuilt from the cell vectors).
    compact_cells
        Read the reference cells from the compact map files and ``cells.h5ad``'s
        embeddings only (:func:`scembed_core.compact.read_compact_cells`: label columns,
        map and embeddings; no anndata, no other ``obs`` columns), as a Dask worker does.
        A bundle without the compact files is read in full.

    Returns
    -------
    Reference
        The bundle's reference, with ``path`` set to ``folder``.

    Raises
    ------
    ReferenceBundleError
        Missing files, bad checksums, unsupported schema version, invalid map.json.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReferenceBundleError(f"Reference folder {folder} does not exist.")
    manifest = _read_manifest(folder)
    _verify_checksums(folder, manifest)
    try:
        universe = GenomicRegions.read_bed(folder / _FILES["universe"]).validate("universe")
    except InputFormatError as exc:
        raise ReferenceBundleError(f"universe.bed of the bundle is invalid: {exc}") from exc
    vectors = load_array(folder, _FILES["vectors"])
    trained = load_array(folder, _FILES["trained"])
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise ReferenceBundleError(
            f"region_vectors.npy must be a 2-D float matrix, not {vectors.ndim}-D {vectors.dtype}."
        )
    bad = int((~np.isfinite(vectors)).any(axis=1).sum())
    if bad:
        raise ReferenceBundleError(
            f"region_vectors.npy: {bad:,} region vectors contain NaN or infinity; every cell "
            "would be left unassigned. The bundle is damaged: rebuild or download it again."
        )
    metadata = {"genome": manifest.get("genome"), "pooling": manifest.get("pooling", "mean")}
    if metadata["pooling"] not in POOLING_METHODS:
        raise ReferenceBundleError(
            f"manifest.json: pooling {metadata['pooling']!r} is not one of {POOLING_METHODS}."
        )
    model = RegionModel(universe, vectors, trained, metadata)
    files = manifest["files"]
    cells = None
    if _FILES["cells"] in files:
        if compact_cells:
            from ..compact import read_compact_cells

            cells = read_compact_cells(folder)
        if cells is None:
            cells = _read_cells(folder / _FILES["cells"])
        if "X_scembed" not in cells.obsm:
            raise ReferenceBundleError(
                "cells.h5ad has no obsm['X_scembed'] (reference embeddings)."
            )
    if (_FILES["whitening_matrix"] in files) != (_FILES["whitening_mean"] in files):
        raise ReferenceBundleError(
            "The bundle lists only one of whitening_mean.npy and whitening_matrix.npy."
        )
    whitening = None
    if _FILES["whitening_matrix"] in files:
        whitening = Whitening(
            load_array(folder, _FILES["whitening_mean"]),
            load_array(folder, _FILES["whitening_matrix"]),
        )
        shape = whitening.matrix.shape
        if whitening.mean.shape != (model.dim,) or shape[0] != model.dim:
            raise ReferenceBundleError(
                f"The whitening ({shape}) does not fit {model.dim}-dimensional region vectors."
            )
    label_model = None
    if cells is not None:
        from ..labels.classifier import load_label_model

        label_model = load_label_model(folder, files)
    index = None
    if _FILES["index"] in files and cells is not None and _is_builtin(folder):
        # Only the built-in bundle's binary index is parsed (hnswlib's loader trusts its
        # input); any other bundle's index is rebuilt from its stored cell vectors, which
        # takes well under a second in the 20-dimensional analysis space. No trust flag
        # extends to it.
        space_dim = whitening.matrix.shape[1] if whitening is not None else model.dim
        index = load_cell_index(folder / _FILES["index"], space_dim, int(cells.n_obs))
    map_params, notes = _read_map(folder, files, cells)
    return Reference(
        model=model,
        cells=cells,
        map_params=map_params,
        manifest=manifest,
        path=folder,
        index=index,
        whitening=whitening,
        notes=notes,
        label_model=label_model,
    )


def bundle_to_zip_bytes(folder: str | Path) -> bytes:
    """Zip a bundle folder in memory (for downloads)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                archive.write(path, arcname=f"{folder.name}/{path.name}")
    return buffer.getvalue()


def load_reference(folder: str | Path, *, trust: bool = False) -> Reference:
    """Load one bundle folder (deprecated name of :func:`load_bundle`).

    Parameters
    ----------
    folder
        Bundle folder.
    trust
        As in :func:`load_bundle`.

    Returns
    -------
    Reference
        What :func:`load_bundle` returns.
    """
    warnings.warn(
        "scembed_core.reference.load_reference is deprecated: use "
        "scembed_core.reference.load_bundle (one bundle folder) or scembed_core.load_reference "
        "(any spec: 'default', a folder, 'hf:...').",
        ScEmbedDeprecationWarning,
        stacklevel=2,
    )
    return load_bundle(folder, trust=trust)
