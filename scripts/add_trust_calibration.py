"""Add (or refresh) the Unknown rule and the coverage curve of a reference bundle.

    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_trust_calibration.py            # built-in
    PYTHONPATH=. PYTHONHASHSEED=0 python scripts/add_trust_calibration.py BUNDLE --source DATA.h5ad

Loads the bundle (checksums verified) and runs the leave-one-type-out calibration
(:func:`scembed_core.labels.loto.calibrate_trust`, seed 0) on its reference cells. With the
training data (``--source``, by default ``../shared/data`` for the built-in reference; its
cells are matched to the bundle's by name) the held-out cells are also thinned to lower
coverage, so the rule is coverage-aware and the curve "regions per cell -> expected
accuracy" is measured. The result goes into ``manifest.json`` under ``"trust"``; no bundle
file is added or changed, so the per-file sha256 map stays as it is. Deterministic: running
it twice writes the same manifest. New bundles get the same calibration from
:func:`scembed_core.train.build_reference` (so ``make reference`` needs no extra step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scembed_core.labels.loto import calibrate_trust
from scembed_core.reference import DEFAULT_REFERENCE_DIR, load_bundle

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"


def add_trust_calibration(folder: Path, source: Path | None, *, seed: int = 0) -> dict:
    """Calibrate the bundle in ``folder`` and store the result in its manifest."""
    from scembed_core.io import read_dataset
    from scembed_core.project import compute_coverage

    reference = load_bundle(folder)
    regions = None
    if source is not None:
        data = read_dataset(source)
        names = reference.cells.obs_names
        missing = names.difference(data.obs_names)
        if len(missing):
            raise SystemExit(f"{len(missing)} reference cells are not in {source}.")
        regions = compute_coverage(data[names].copy(), reference).cell_regions
    trust = calibrate_trust(reference, regions, seed=seed)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())  # re-read: keep every other entry
    manifest["trust"] = trust
    manifest_path.write_text(json.dumps(manifest, indent=2, default=float))
    load_bundle(folder)  # the bundle still loads and validates
    return trust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_REFERENCE_DIR)
    parser.add_argument("--source", type=Path, default=None, help="the training data (h5ad)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = args.source
    if source is None and args.folder.resolve() == DEFAULT_REFERENCE_DIR.resolve():
        source = SOURCE
    trust = add_trust_calibration(args.folder, source, seed=args.seed)
    rule = trust["unknown_rule"]
    print(
        json.dumps(
            {k: rule[k] for k in ("signal", "recall", "fpr", "target_fpr")}
            | {"coverage_curve": trust["coverage_curve"]},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
