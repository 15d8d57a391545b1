"""Upgrade the built-in reference bundle to the pickle-free map format, in place.

The previous format stored the reference map as a pickled umap-learn model
(``umap_model.joblib``). The map's coordinates are already in ``cells.h5ad`` (obsm
``X_umap``); this script writes ``map.json`` (the curve parameters ``a``/``b`` and umap's
transform settings, see :class:`scembed_core.evmap.MapParams`), deletes the pickle and
rewrites ``manifest.json`` with the new per-file sha256 map. Word2Vec is not retrained and
no other file changes. Idempotent: a bundle already in the new format is left as is.

The pickle is the built-in bundle's own (built by ``make reference`` here), so it is read
once, here, to take its exact hyperparameters; ``--no-unpickle`` uses umap-learn's
``find_ab_params`` on the defaults (``min_dist=0.1``, ``spread=1.0``) instead.

Run from the repository root::

    PYTHONPATH=$PWD python scripts/upgrade_default_reference_map.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from scembed_core.evmap import MapParams, find_ab_params
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle

PICKLE = "umap_model.joblib"
MAP = "map.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def map_params_of(folder: Path, *, unpickle: bool) -> MapParams:
    """The map parameters of the old bundle's UMAP model."""
    if unpickle and (folder / PICKLE).is_file():
        import joblib

        model = joblib.load(folder / PICKLE)  # our own built-in file, never a user's
        params = MapParams.from_umap(model)
        return params
    a, b = find_ab_params(1.0, 0.1)
    return MapParams(a=a, b=b, fit={"min_dist": 0.1, "spread": 1.0, "metric": "euclidean"})


def upgrade(folder: Path, *, unpickle: bool = True) -> bool:
    """Upgrade ``folder`` in place; returns whether anything changed."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    files = dict(manifest.get("files") or {})
    has_pickle = PICKLE in files or (folder / PICKLE).is_file()
    if MAP in files and not has_pickle:
        return False
    if MAP not in files:
        params = map_params_of(folder, unpickle=unpickle)
        (folder / MAP).write_text(json.dumps(params.to_dict(), indent=2))
    files.pop(PICKLE, None)
    (folder / PICKLE).unlink(missing_ok=True)
    files[MAP] = _sha256(folder / MAP)
    manifest["files"] = files
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_REFERENCE_DIR)
    parser.add_argument(
        "--no-unpickle",
        action="store_true",
        help="take a, b from umap's defaults instead of reading the old (own) pickle once",
    )
    args = parser.parse_args()
    changed = upgrade(args.folder, unpickle=not args.no_unpickle)
    reference = load_bundle(args.folder)  # validates checksums and map.json
    assert reference.can_ev_project and not (args.folder / PICKLE).exists()
    print(("upgraded " if changed else "already in the new format: ") + str(args.folder))
    print(json.dumps(reference.map_params.to_dict(), indent=1))


if __name__ == "__main__":
    main()
