"""One dispatcher for reference specs: ``"default"``, a folder (bundle or geniml), ``"hf:..."``.

It sits above the formats: bundles (:mod:`.bundle`), geniml folders
(:mod:`scembed_core.formats.geniml`) and the hub (:mod:`scembed_core.hub`), which are
imported when a spec needs them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ReferenceBundleError
from .bundle import load_bundle
from .core import DEFAULT_REFERENCE_DIR, Reference


def load_default_reference() -> Reference:
    """Return the built-in reference (Granja 2019 bone marrow, hg19) shipped with the package."""
    if not (DEFAULT_REFERENCE_DIR / "manifest.json").is_file():
        raise ReferenceBundleError(
            f"The built-in reference is missing from {DEFAULT_REFERENCE_DIR}; "
            "run `make reference` to rebuild it."
        )
    return load_bundle(DEFAULT_REFERENCE_DIR)


def resolve_reference(spec: str | Path, *, trust: bool = False) -> Reference:
    """Load a reference from ``"default"``, a folder, or ``"hf:OWNER/NAME[@REV]"``.

    A folder may be one of our bundles (``manifest.json``) or a geniml model folder
    (``config.yaml`` + ``universe.bed`` + weights), which gives a region-only reference.
    """
    text = str(spec)
    if text == "default":
        return load_default_reference()
    if text.startswith("hf:"):
        from ..hub import KNOWN_HUB_MODELS, load_hub_reference, parse_hub_spec

        repo_id, _ = parse_hub_spec(text)
        folder, _ = load_hub_reference(text, trust=trust)
        reference = _load_folder(Path(folder), trust=trust)
        known = {m["repo_id"]: m for m in KNOWN_HUB_MODELS}.get(repo_id, {})
        manifest = {**reference.manifest, "name": repo_id, "source": text}
        if reference.genome == "unknown" and known.get("genome"):
            manifest["genome"] = known["genome"]
        return dataclasses.replace(reference, manifest=manifest)
    return _load_folder(Path(text), trust=trust)


def _load_folder(folder: Path, *, trust: bool) -> Reference:
    if not folder.is_dir():
        raise ReferenceBundleError(
            f"Reference folder {folder} does not exist. Use 'default' (the built-in "
            "reference), a bundle or geniml model folder, or hf:OWNER/NAME[@REVISION]."
        )
    if (folder / "manifest.json").is_file():
        return load_bundle(folder, trust=trust)
    if (folder / "config.yaml").is_file() or (folder / "model.bin").is_file():
        from ..formats.geniml import read_geniml_model

        model = read_geniml_model(folder, trust_pickle=trust)
        manifest = {"name": folder.name, "genome": model.metadata.get("genome", "unknown")}
        manifest.update({"source": str(folder), "format": model.metadata.get("format")})
        return Reference(model=model, manifest=manifest, path=folder)
    raise ReferenceBundleError(
        f"{folder} is neither a scEmbed bundle (manifest.json) nor a geniml model folder "
        "(config.yaml, universe.bed, model.safetensors or checkpoint.pt)."
    )
