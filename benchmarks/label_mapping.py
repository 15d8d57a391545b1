"""Scoring renamed labels: accuracy before and after the suggested label map (issue 23).

    PYTHONPATH=. PYTHONHASHSEED=0 python -m benchmarks.label_mapping

The demo's held-out cells (1,550, built-in reference, default label classifier) are scored
against their own ``cell_type`` column, then against a copy with five types renamed as
another lab might name them; the renamed copy is scored without a map and with
:func:`scembed_core.labels.names.suggest_label_map` (one click on the Annotation page), and
at the lineage level (:func:`scembed_core.lineage.lineage_report`).
"""

from __future__ import annotations

import time

import numpy as np

RENAMED = {
    "B": "B cells",
    "NK": "natural killer",
    "CD14.Mono.1": "Monocytes",
    "CD14.Mono.2": "Monocytes",
    "CD4.N1": "cd4 n1",
}


def main() -> None:
    import scembed_core as se
    from scembed_core.evaluate import classification_report
    from scembed_core.labels.names import suggest_label_map
    from scembed_core.lineage import lineage_report, reference_lineages
    from scembed_core.reference import DEMO_QUERY_PATH

    reference = se.load_reference("default")
    adata = se.read(DEMO_QUERY_PATH)
    se.tl.project(adata, reference)
    se.tl.transfer_labels(adata, reference)
    predicted = adata.obs["scembed_label"].astype(str).to_numpy()
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    user = np.array([RENAMED.get(x, x) for x in truth], dtype=object)
    started = time.perf_counter()
    mapping = suggest_label_map(user, predicted)
    seconds = time.perf_counter() - started
    lineages = reference_lineages(reference)
    rows = [
        ("own names", classification_report(truth, predicted).accuracy),
        ("renamed, no map", classification_report(user, predicted).accuracy),
        ("renamed, suggested map", classification_report(user, predicted, label_map=mapping).accuracy),
        ("lineages (renamed, suggested map)", lineage_report(user, predicted, lineages, label_map=mapping).accuracy),
    ]  # fmt: skip
    print("| scoring | accuracy |\n| --- | ---: |")
    for name, accuracy in rows:
        print(f"| {name} | {accuracy:.3f} |")
    print(f"\nsuggest_label_map on {len(user):,} cells: {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
