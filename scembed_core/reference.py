"""Reference bundles: region embeddings, reference cells, their map and a kNN index.

A bundle is a folder::

    manifest.json        schema/library version, genome, parameters, labels, sha256 of files
    universe.bed         the region vocabulary (row i = region i)
    region_vectors.npy   (n_regions, dim) float32 region embeddings (no pickle)
    regions_trained.npy  bool mask of regions with learned vectors
    cells.h5ad           reference cells: obsm X_scembed / X_umap and label columns in obs
    whitening_mean.npy   mean of the reference cell embeddings (analysis space, see Whitening)
    whitening_matrix.npy (dim, n_components) whitening projection fitted on the reference cells
    knn_index.bin        hnswlib cosine index over the whitened reference cell embeddings
    label_model*.npy     label classifier arrays + label_model.json (see label_model.py)
    umap_model.joblib    fitted UMAP (a pickle: loaded only from trusted sources)

Only the UMAP model is a pickle. It is loaded from the built-in bundle, from bundles this
library wrote on this machine (their hashes are kept in a local trust store), or when the
caller passes ``trust=True``; never from an upload.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import ReferenceBundleError, UntrustedSourceError
from .regions import GenomicRegions

__all__ = [
    "RegionModel",
    "Reference",
    "Whitening",
    "save_reference",
    "load_reference",
    "load_default_reference",
    "resolve_reference",
    "bundle_to_zip_bytes",
    "DEFAULT_REFERENCE_DIR",
    "DEMO_QUERY_PATH",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_REFERENCE_DIR = PACKAGE_DATA / "default_reference"
DEMO_QUERY_PATH = PACKAGE_DATA / "demo_query.h5ad"

_FILES = {
    "universe": "universe.bed",
    "vectors": "region_vectors.npy",
    "trained": "regions_trained.npy",
    "cells": "cells.h5ad",
    "index": "knn_index.bin",
    "umap": "umap_model.joblib",
    "whitening_mean": "whitening_mean.npy",
    "whitening_matrix": "whitening_matrix.npy",
}


@dataclass
class RegionModel:
    """Region embeddings over a universe: the part of scEmbed every reference has.

    Attributes
    ----------
    universe
        The region vocabulary; region ``i`` has vector ``vectors[i]``.
    vectors
        ``(n_regions, dim)`` float32 embeddings.
    trained
        Regions that carry a learned vector; the others are excluded from pooling.
    metadata
        Free-form facts: genome, source, training parameters, format.
    """

    universe: GenomicRegions
    vectors: np.ndarray
    trained: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.trained = np.asarray(self.trained, dtype=bool)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.universe):
            raise ReferenceBundleError(
                f"Region vectors have shape {self.vectors.shape} but the universe has "
                f"{len(self.universe)} regions; expected ({len(self.universe)}, dim)."
            )
        if self.trained.shape != (len(self.universe),):
            raise ReferenceBundleError(
                f"The trained mask has {self.trained.shape[0]} entries for "
                f"{len(self.universe)} regions."
            )

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.vectors.shape[1])


@dataclass
class Whitening:
    """PCA whitening fitted on the reference cell embeddings (the analysis space).

    Mean-pooled word vectors share a few dominant directions, which crowd cosine
    similarities together. Centring on the reference mean, keeping the top principal
    components and scaling each to unit variance (Su et al. 2021, "Whitening sentence
    representations") makes cosine kNN far more discriminative; it is fitted once on the
    reference cells and frozen with the bundle, like the UMAP model.

    Attributes
    ----------
    mean
        ``(dim,)`` mean of the reference cell embeddings.
    matrix
        ``(dim, n_components)`` principal axes divided by their standard deviations.
    """

    mean: np.ndarray
    matrix: np.ndarray

    @classmethod
    def fit(cls, embedding: np.ndarray, n_components: int = 20) -> Whitening:
        """Fit on reference embeddings (rows must be finite).

        At most a quarter of the embedding dimensions are kept: whitening every direction
        would blow the noise directions up to the same scale as the signal.
        """
        x = np.asarray(embedding, dtype=np.float64)
        mean = x.mean(axis=0)
        cap = min(n_components, max(1, x.shape[1] // 4), x.shape[0] - 1)
        n_components = int(max(1, cap))
        _, singular, axes = np.linalg.svd(x - mean, full_matrices=False)
        scale = singular[:n_components] / np.sqrt(max(len(x) - 1, 1))
        matrix = axes[:n_components].T / np.where(scale > 0, scale, 1.0)
        return cls(mean.astype(np.float32), matrix.astype(np.float32))

    def transform(self, embedding: np.ndarray) -> np.ndarray:
        """Whitened coordinates; NaN rows stay NaN."""
        return ((np.asarray(embedding, dtype=np.float32) - self.mean) @ self.matrix).astype(
            np.float32
        )


@dataclass
class Reference:
    """A loaded reference: region model plus (optionally) annotated reference cells.

    A region-only reference (e.g. a geniml model from the hub) supports E-projection;
    one with cells, a UMAP model and labels supports EV-projection and label transfer.
    """

    model: RegionModel
    cells: Any = None  # anndata.AnnData with obsm X_scembed, X_umap
    umap_model: Any = None
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    index: Any = None  # hnswlib.Index over analysis-space reference cells, built or loaded
    whitening: Whitening | None = None
    label_model: Any = None  # scembed_core.label_model.LabelModel (None: kNN vote only)

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
        """obs columns of the reference cells that hold labels."""
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
        return self.umap_model is not None and self.cells is not None

    @property
    def can_transfer_labels(self) -> bool:
        """Whether the reference carries labelled cells for kNN transfer."""
        return self.cells is not None and bool(self.label_keys)

    def label_counts(self, key: str | None = None) -> pd.Series:
        """Number of reference cells per label."""
        key = key or self.default_label_key
        if key is None:
            return pd.Series(dtype=int)
        return self.cells.obs[key].astype(str).value_counts()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _trust_store_path() -> Path:
    default = Path.home() / ".cache" / "scembed" / "trusted-bundles.json"
    return Path(os.environ.get("SCEMBED_TRUST_STORE", default))


def _trusted_hashes() -> set[str]:
    path = _trust_store_path()
    try:
        return set(json.loads(path.read_text()))
    except (OSError, ValueError):
        return set()


def _remember_trusted(digest: str) -> None:
    """Record the hash of a pickle this library wrote, so it may be loaded later."""
    path = _trust_store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sorted(_trusted_hashes() | {digest})))
    except OSError:
        pass  # read-only home (hosted app): the bundle then needs trust=True to reload


def save_reference(
    reference: Reference, folder: str | Path, *, remember_trust: bool = True
) -> Path:
    """Write a reference bundle (see the module docstring for the layout).

    Parameters
    ----------
    reference
        The reference to save.
    folder
        Target folder (created; existing bundle files are overwritten).
    remember_trust
        Record the UMAP pickle's hash in the local trust store so this machine can load
        it again without ``trust=True``.
    """
    import anndata as ad
    import joblib

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
        index = reference.index
        if index is None:
            from .annotate import build_cell_index

            index = build_cell_index(reference.cell_space)
            reference.index = index
        if hasattr(index, "save_index"):
            index.save_index(str(folder / _FILES["index"]))
            written.append("index")
    if reference.whitening is not None:
        np.save(folder / _FILES["whitening_mean"], reference.whitening.mean, allow_pickle=False)
        np.save(folder / _FILES["whitening_matrix"], reference.whitening.matrix, allow_pickle=False)
        written += ["whitening_mean", "whitening_matrix"]
    extra: list[str] = []
    if reference.label_model is not None:
        from .label_model import save_label_model

        extra = save_label_model(reference.label_model, folder)
    if reference.umap_model is not None:
        joblib.dump(reference.umap_model, folder / _FILES["umap"], compress=3)
        written.append("umap")
    manifest = dict(reference.manifest)
    manifest.update(
        {
            "schema_version": SCHEMA_VERSION,
            "library": "scembed_core",
            "library_version": __version__,
            "n_regions": len(model.universe),
            "embedding_dim": model.dim,
            "n_cells": reference.n_cells,
            "genome": reference.genome,
            "files": {
                name: _sha256(folder / name) for name in [_FILES[k] for k in written] + extra
            },
        }
    )
    manifest.setdefault("name", folder.name)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    reference.manifest = manifest
    reference.path = folder
    if remember_trust and "umap" in written:
        _remember_trusted(manifest["files"][_FILES["umap"]])
    return folder


def _read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise ReferenceBundleError(
            f"{folder} is not a reference bundle: manifest.json is missing. Expected a folder "
            "written by `python -m scembed_core train` or a geniml model folder."
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ReferenceBundleError(f"manifest.json in {folder} is not valid JSON: {exc}") from exc
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReferenceBundleError(
            f"Bundle schema version {version!r} is not supported (this library reads "
            f"version {SCHEMA_VERSION}); rebuild the bundle with this version of scembed_core."
        )
    return manifest


def _verify_checksums(folder: Path, manifest: dict) -> None:
    files = manifest.get("files") or {}
    for required in (_FILES["universe"], _FILES["vectors"], _FILES["trained"]):
        if required not in files:
            raise ReferenceBundleError(f"manifest.json does not list the required file {required}.")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ReferenceBundleError(
                f"Bundle file {name} is listed in manifest.json but missing."
            )
        actual = _sha256(path)
        if actual != expected:
            raise ReferenceBundleError(
                f"Checksum mismatch for {name}: manifest says {expected[:12]}..., file is "
                f"{actual[:12]}... The bundle is corrupt or was modified; download it again."
            )


def _umap_hash_trusted(files: dict) -> bool:
    digest = files.get(_FILES["umap"])
    return digest is not None and digest in _trusted_hashes()


def _is_builtin(folder: Path) -> bool:
    return folder.resolve() == DEFAULT_REFERENCE_DIR.resolve()


def load_reference(folder: str | Path, *, trust: bool = False) -> Reference:
    """Load a reference bundle, validating manifest version and checksums.

    Parameters
    ----------
    folder
        Bundle folder.
    trust
        Allow unpickling the UMAP model of a bundle from elsewhere. Built-in bundles and
        bundles written by this library on this machine are trusted without it.

    Raises
    ------
    ReferenceBundleError
        Missing files, bad checksums, unsupported schema version.
    UntrustedSourceError
        The bundle has a pickled UMAP model from an untrusted source.
    """
    import anndata as ad

    folder = Path(folder)
    if not folder.is_dir():
        raise ReferenceBundleError(f"Reference folder {folder} does not exist.")
    manifest = _read_manifest(folder)
    _verify_checksums(folder, manifest)
    universe = GenomicRegions.read_bed(folder / _FILES["universe"])
    vectors = np.load(folder / _FILES["vectors"], allow_pickle=False)
    trained = np.load(folder / _FILES["trained"], allow_pickle=False)
    model = RegionModel(universe, vectors, trained, {"genome": manifest.get("genome")})
    reference = Reference(model=model, manifest=manifest, path=folder)
    files = manifest["files"]
    if _FILES["cells"] in files:
        reference.cells = ad.read_h5ad(folder / _FILES["cells"])
    if reference.cells is not None and "X_scembed" not in reference.cells.obsm:
        raise ReferenceBundleError("cells.h5ad has no obsm['X_scembed'] (reference embeddings).")
    if (_FILES["whitening_matrix"] in files) != (_FILES["whitening_mean"] in files):
        raise ReferenceBundleError(
            "The bundle lists only one of whitening_mean.npy and whitening_matrix.npy."
        )
    if _FILES["whitening_matrix"] in files:
        reference.whitening = Whitening(
            np.load(folder / _FILES["whitening_mean"], allow_pickle=False),
            np.load(folder / _FILES["whitening_matrix"], allow_pickle=False),
        )
        shape = reference.whitening.matrix.shape
        if reference.whitening.mean.shape != (model.dim,) or shape[0] != model.dim:
            raise ReferenceBundleError(
                f"The whitening ({shape}) does not fit {model.dim}-dimensional region vectors."
            )
    if reference.cells is not None:
        from .label_model import load_label_model

        reference.label_model = load_label_model(folder, files)
    trusted_source = trust or _is_builtin(folder) or _umap_hash_trusted(files)
    if _FILES["index"] in files and reference.cells is not None and trusted_source:
        from .annotate import load_cell_index

        space_dim = reference.whitening.matrix.shape[1] if reference.whitening else model.dim
        reference.index = load_cell_index(folder / _FILES["index"], space_dim, reference.n_cells)
    # otherwise the index is rebuilt from the reference cells on first use (never parse an
    # untrusted binary index with hnswlib's unchecked loader)
    if _FILES["umap"] in files:
        digest = files[_FILES["umap"]]
        if not (trust or _is_builtin(folder) or digest in _trusted_hashes()):
            raise UntrustedSourceError(
                f"The bundle {folder.name} contains a pickled UMAP model (umap_model.joblib) "
                "from a source this machine did not write. Unpickling can run code: pass "
                "--trust (or tick 'I trust this source') only if you trust where it came from."
            )
        import joblib

        reference.umap_model = joblib.load(folder / _FILES["umap"])
    return reference


def load_default_reference() -> Reference:
    """The built-in reference (Granja 2019 bone marrow, hg19) shipped with the package."""
    if not (DEFAULT_REFERENCE_DIR / "manifest.json").is_file():
        raise ReferenceBundleError(
            f"The built-in reference is missing from {DEFAULT_REFERENCE_DIR}; "
            "run `make reference` to rebuild it."
        )
    return load_reference(DEFAULT_REFERENCE_DIR)


def resolve_reference(spec: str | Path, *, trust: bool = False) -> Reference:
    """Load a reference from ``"default"``, a folder, or ``"hf:OWNER/NAME[@REV]"``.

    A folder may be one of our bundles (``manifest.json``) or a geniml model folder
    (``config.yaml`` + ``universe.bed`` + weights), which gives a region-only reference.
    """
    text = str(spec)
    if text == "default":
        return load_default_reference()
    if text.startswith("hf:"):
        from .hub import KNOWN_HUB_MODELS, load_hub_reference, parse_hub_spec

        repo_id, _ = parse_hub_spec(text)
        folder, _ = load_hub_reference(text, trust=trust)
        reference = _load_folder(Path(folder), trust=trust)
        known = {m["repo_id"]: m for m in KNOWN_HUB_MODELS}.get(repo_id, {})
        reference.manifest["name"] = repo_id
        reference.manifest["source"] = text
        if reference.genome == "unknown" and known.get("genome"):
            reference.manifest["genome"] = known["genome"]
        return reference
    return _load_folder(Path(text), trust=trust)


def _load_folder(folder: Path, *, trust: bool) -> Reference:
    if not folder.is_dir():
        raise ReferenceBundleError(
            f"Reference folder {folder} does not exist. Use 'default' (the built-in "
            "reference), a bundle or geniml model folder, or hf:OWNER/NAME[@REVISION]."
        )
    if (folder / "manifest.json").is_file():
        return load_reference(folder, trust=trust)
    if (folder / "config.yaml").is_file() or (folder / "model.bin").is_file():
        from .geniml import read_geniml_model

        model = read_geniml_model(folder, trust_pickle=trust)
        manifest = {"name": folder.name, "genome": model.metadata.get("genome", "unknown")}
        manifest.update({"source": str(folder), "format": model.metadata.get("format")})
        return Reference(model=model, manifest=manifest, path=folder)
    raise ReferenceBundleError(
        f"{folder} is neither a scEmbed bundle (manifest.json) nor a geniml model folder "
        "(config.yaml, universe.bed, model.safetensors or checkpoint.pt)."
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
