"""Add (or refresh) the label classifier of a reference bundle without retraining Word2Vec.

    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_label_model.py            # built-in
    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_label_model.py BUNDLE_DIR

Loads the bundle (checksums verified), fits the label model with its held-out calibration
on the bundle's reference cells (:func:`scembed_core.labels.classifier.fit_label_model`, default
parameters, seed 0), writes the ``label_model*`` files beside the others and updates
``manifest.json``: the per-file sha256 map (only the label-model entries change; every
other file is left as it is) and a ``label_model`` summary. Running it twice gives the same
files (the fit is deterministic), so it is safe to rerun after other bundle changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from scembed_core.labels.classifier import (
    LABEL_MODEL_FILES,
    fit_label_model,
    manifest_entry,
    save_label_model,
)
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_label_model(folder: Path, *, seed: int = 0, trust: bool = False) -> dict:
    """Fit and store the label model of the bundle in ``folder``; returns its summary."""
    reference = load_bundle(folder, trust=trust)
    key = reference.default_label_key
    if key is None:
        raise SystemExit(f"{folder} has no labelled reference cells; nothing to fit.")
    model = fit_label_model(
        reference.cells.obsm["X_scembed"],
        reference.cells.obs[key].to_numpy(),
        whitening=reference.whitening,
        label_key=key,
        seed=seed,
    )
    written = save_label_model(model, folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())  # re-read: keep every other entry
    files = {k: v for k, v in manifest["files"].items() if k not in LABEL_MODEL_FILES.values()}
    files.update({name: _sha256(folder / name) for name in written})
    manifest["files"] = files
    manifest["label_model"] = manifest_entry(model)
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    load_bundle(folder, trust=trust)  # the bundle still loads and validates
    return manifest["label_model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_REFERENCE_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trust", action="store_true", help="allow the bundle's UMAP pickle")
    args = parser.parse_args()
    summary = add_label_model(args.folder, seed=args.seed, trust=args.trust)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
