"""Add (or refresh) the cell-type profiles, lineages and canonical marker genes of a bundle.

    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_type_profiles.py            # built-in
    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_type_profiles.py BUNDLE_DIR --source X.h5ad

The built-in bundle's cells carry no accessibility, so the profiles (each type's open
fraction per universe region, :mod:`scembed_core.labels.second_opinion`) are computed from
the source dataset it was trained on (``../shared/data/granja2019_bmmc``), restricted to
the bundle's own reference cells (matched by cell name; the held-out demo cells are not
used). Writes ``type_profiles.npy`` and updates ``manifest.json``: the sha256 of that file
(every other entry is left as it is), ``type_profiles``, and for the built-in reference the
``lineages`` (type -> lineage, for ``markers_agree``) and ``marker_genes`` (lineage ->
canonical marker genes whose gene body + 2 kb upstream holds a universe region: the
Evidence view's default dot-plot genes; edit the manifest to change them). Deterministic:
running it twice gives the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from scembed_core.labels.second_opinion import (
    PROFILE_FILE,
    compute_type_profiles,
    save_type_profiles,
)
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"

#: Granja 2019 BMMC types -> lineage (types of one lineage agree for ``markers_agree``).
LINEAGES = {
    "HSC": "Progenitor", "CMP.LMPP": "Progenitor", "GMP": "Progenitor",
    "CLP.1": "Lymphoid progenitor", "CLP.2": "Lymphoid progenitor",
    "Pre.B": "B", "B": "B",
    "CD14.Mono.1": "Monocyte", "CD14.Mono.2": "Monocyte",
    "CD4.N1": "T", "CD4.N2": "T", "CD4.M": "T", "CD8.N": "T", "CD8.CM": "T", "CD8.EM": "T",
    "NK": "NK",
}  # fmt: skip
#: Canonical markers per lineage, those the 10k-region universe covers (hg19 symbols).
MARKER_GENES = {
    "Progenitor": ["CD34", "GATA2", "MPO"],
    "Lymphoid progenitor": ["RAG1"],
    "B": ["PAX5", "EBF1", "IGLL1"],
    "Monocyte": ["LYZ", "CEBPA"],
    "T": ["CD3E", "CD3G", "CD247", "BCL11B", "IL7R", "CD4", "CD8B"],
    "NK": ["GZMB", "NCAM1"],
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_type_profiles(folder: Path, source: Path, *, builtin: bool) -> dict:
    """Compute and store the profiles of the bundle in ``folder``; returns the manifest entry."""
    from scembed_core.io import read_dataset
    from scembed_core.project import regions_of
    from scembed_core.regions import cells_by_universe, map_peaks_to_universe

    reference = load_bundle(folder)
    key = reference.default_label_key
    if key is None:
        raise SystemExit(f"{folder} has no labelled reference cells.")
    data = read_dataset(source)
    missing = ~reference.cells.obs_names.isin(data.obs_names)
    if missing.any():
        raise SystemExit(f"{int(missing.sum())} reference cells are not in {source}.")
    data = data[reference.cells.obs_names]
    mapping = map_peaks_to_universe(regions_of(data), reference.model.universe)
    signal = cells_by_universe(data.X, mapping)
    profiles = compute_type_profiles(signal, reference.cells.obs[key].to_numpy(), key)
    written = save_type_profiles(profiles, folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())  # re-read: keep every other entry
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k != PROFILE_FILE}
    manifest["files"].update({name: _sha256(folder / name) for name in written})
    manifest["type_profiles"] = {**profiles.manifest_entry(), "source": source.name}
    if builtin:
        manifest["lineages"] = LINEAGES
        manifest["marker_genes"] = MARKER_GENES
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    load_bundle(folder)  # the bundle still loads and validates
    return manifest["type_profiles"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_REFERENCE_DIR)
    parser.add_argument("--source", type=Path, default=SOURCE)
    args = parser.parse_args()
    builtin = args.folder.resolve() == DEFAULT_REFERENCE_DIR.resolve()
    summary = add_type_profiles(args.folder, args.source, builtin=builtin)
    print(json.dumps({k: v for k, v in summary.items() if k != "n_cells"}, indent=1))


if __name__ == "__main__":
    main()
