"""Add (or refresh) the compact, memory-mappable reference map of a bundle.

    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_compact_map.py            # built-in
    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_compact_map.py BUNDLE_DIR

Loads the bundle (checksums verified), writes ``map_coords.npy``, ``map_label_codes.npy``
and ``map_labels.json`` (:mod:`scembed_core.compact`: the map coordinates and label columns
of ``cells.h5ad``, read by the app's landing page without anndata) beside the other files
and adds their sha256 to ``manifest.json`` (every other entry is left as it is). Running it
twice gives the same files, so it is safe to rerun after other bundle changes (e.g. after
``scripts/add_label_model.py``). Bundles written by ``save_reference`` already have them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from scembed_core.compact import COMPACT_FILES, read_summary, write_compact_map
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_compact_map(folder: Path) -> dict:
    """Write the compact map of the bundle in ``folder``; returns its files' sha256."""
    reference = load_bundle(folder)
    if reference.cells is None or "X_umap" not in reference.cells.obsm:
        raise SystemExit(f"{folder} has no reference map (cells.h5ad obsm X_umap).")
    written = write_compact_map(folder, reference.cells, reference.label_keys)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())  # re-read: keep every other entry
    files = {k: v for k, v in manifest["files"].items() if k not in COMPACT_FILES}
    files.update({name: _sha256(folder / name) for name in written})
    manifest["files"] = files
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    # the bundle still loads, and the compact view equals the full one
    reference = load_bundle(folder)
    summary = read_summary(folder)
    assert summary is not None
    assert np.array_equal(summary.coords, reference.map_coords)
    for key in reference.label_keys:
        assert summary.label_counts(key).equals(reference.label_counts(key))
    return {name: files[name] for name in written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_REFERENCE_DIR)
    args = parser.parse_args()
    print(json.dumps(add_compact_map(args.folder), indent=1))


if __name__ == "__main__":
    main()
