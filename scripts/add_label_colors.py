"""Add (or refresh) a reference bundle's label colours and label hierarchy (manifest keys).

    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_label_colors.py            # built-in
    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_label_colors.py BUNDLE_DIR

Writes three keys of ``manifest.json`` and touches no other file (so no checksum changes):

- ``label_hierarchy``: ``{label_key: {label: lineage}}`` (the built-in bundle's cell types
  from :data:`scembed_core.lineage.BUILTIN_HIERARCHY`, others by
  :func:`scembed_core.lineage.guess_lineage`);
- ``label_colors``: ``{label_key: {label: "#RRGGBB"}}`` from
  :func:`scembed_core.palette.assign_colors` (lineages in related hues);
- ``lineage_colors``: ``{lineage: "#RRGGBB"}``.

Deterministic: running it twice gives the same manifest, so it is safe to rerun after
other bundle scripts (``scripts/add_label_model.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anndata as ad

from scembed_core.lineage import guess_lineage
from scembed_core.palette import LINEAGE_COLORS, assign_colors
from scembed_core.reference import DEFAULT_REFERENCE_DIR


def add_label_colors(folder: Path) -> dict:
    """Store the label hierarchy and colours of the bundle in ``folder``; returns them.

    Reads only ``manifest.json`` and the label columns of ``cells.h5ad`` (no model is
    loaded; no file but the manifest is written, so its checksums stay valid).
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if "cells.h5ad" not in (manifest.get("files") or {}):
        raise SystemExit(f"{folder} has no reference cells; nothing to colour.")
    obs = ad.read_h5ad(folder / "cells.h5ad", backed="r").obs
    hierarchy, colors = {}, {}
    for key in [k for k in manifest.get("label_keys") or [] if k in obs]:
        labels = sorted(obs[key].astype(str).unique())
        lineages = {label: guess_lineage(label) for label in labels}
        lineages = {label: lineage for label, lineage in lineages.items() if lineage}
        hierarchy[key] = lineages
        colors[key] = dict(sorted(assign_colors(labels, lineages).items()))
    manifest["label_hierarchy"] = hierarchy
    manifest["label_colors"] = colors
    manifest["lineage_colors"] = dict(LINEAGE_COLORS)
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    return {"label_hierarchy": hierarchy, "label_colors": colors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_REFERENCE_DIR)
    args = parser.parse_args()
    print(json.dumps(add_label_colors(args.folder), indent=1))


if __name__ == "__main__":
    main()
