"""Unknown cells and stable answers: leave-one-lineage-out on the real bone-marrow data.

``nice -n 10 python -m benchmarks.trust`` (a few minutes on 2 cores). For each lineage of
the built-in reference (Granja 2019 BMMC donor D6T1): the reference cells of that lineage
are removed (cells, kNN index, class centres), the Unknown rule is calibrated on the
remaining cells by leave-one-type-out (with their regions, coverage-aware), and the demo
query (held-out cells of the same donor, every lineage present) is labelled. Reported: the
share of the hidden lineage's query cells called Unknown (per cell, and with the cluster
flag), the share of the other cells called Unknown.

Affordable on a shared 2-core machine, so two shortcuts, both optimistic for the hidden
lineage being recognised as *something*: the Word2Vec region vectors and the whitening
were trained with the lineage present (not retrained), and labels come from the kNN vote
(the stored classifier covers the hidden classes; refitting it per lineage takes minutes of
lbfgs here). The default reference's own row (nothing hidden) uses the stored classifier.
Writes ``benchmarks/results/trust.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

LINEAGES = {
    "B": ("B", "Pre.B"),
    "T": ("CD4.N1", "CD4.N2", "CD4.M", "CD8.N", "CD8.CM", "CD8.EM"),
    "NK": ("NK",),
    "monocytes": ("CD14.Mono.1", "CD14.Mono.2"),
    "erythroid": (),  # no erythroid cells among the 16 Granja types of this subset
    "progenitors": ("HSC", "CMP.LMPP", "GMP", "CLP.1", "CLP.2"),
}
OUT = Path(__file__).resolve().parent / "results" / "trust.json"


def _without(reference, regions, hide: tuple[str, ...]):
    from scembed_core.labels.loto import calibrate_trust
    from scembed_core.reference import Reference

    key = reference.default_label_key
    keep = ~reference.cells.obs[key].astype(str).isin(hide).to_numpy()
    cells = reference.cells[keep].copy()
    manifest = {
        "name": f"without {'/'.join(hide)}",
        "label_keys": [key],
        "genome": reference.genome,
        "mapping_distance_k": reference.manifest.get("mapping_distance_k", 15),
    }
    partial = Reference(
        model=reference.model,
        cells=cells,
        manifest=manifest,
        whitening=reference.whitening,
    )
    trust = calibrate_trust(partial, regions[keep])
    return dataclasses.replace(partial, manifest={**manifest, "trust": trust}), trust


def _score(reference, query, truth, hide, method):
    from scembed_core.cluster import build_knn_graph, find_resolution
    from scembed_core.labels.assign import UNKNOWN, assign_labels, cluster_table
    from scembed_core.project import project

    projection = project(query, reference, ev=False)
    labels = assign_labels(
        projection.embedding,
        reference,
        method=method,
        neighbors=projection.neighbors,
        n_regions=projection.coverage.n_regions_per_cell,
        warn=False,
    )
    graph = build_knn_graph(projection.analysis, 15, seed=0)
    clusters = find_resolution(graph, 16, seed=0).labels
    table = cluster_table(clusters.astype(str), labels, reference).set_index("cluster")
    flagged = table["unknown"].reindex(clusters.astype(str)).to_numpy(dtype=bool)
    unknown = labels["label"].to_numpy() == UNKNOWN
    hidden = np.isin(truth, hide)
    out = {
        "n_hidden": int(hidden.sum()),
        "others_unknown": float(unknown[~hidden].mean()),
        "others_unknown_or_flagged": float((unknown | flagged)[~hidden].mean()),
        "accuracy_others": float((labels["label"].to_numpy() == truth)[~hidden].mean()),
        "accuracy_others_without_rule": float(
            (labels["predicted"].to_numpy() == truth)[~hidden].mean()
        ),
    }
    if hidden.any():
        out["hidden_unknown"] = float(unknown[hidden].mean())
        out["hidden_unknown_or_flagged"] = float((unknown | flagged)[hidden].mean())
    return out


def main() -> None:
    from scembed_core.io import read_dataset
    from scembed_core.project import compute_coverage
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

    from .common import load_granja

    started = time.perf_counter()
    reference = load_default_reference()
    granja = load_granja().adata
    regions = compute_coverage(granja[reference.cells.obs_names].copy(), reference).cell_regions
    query = read_dataset(DEMO_QUERY_PATH)
    truth = query.obs["cell_type"].astype(str).to_numpy()
    results = {"full reference": _score(reference, query, truth, (), "classifier")}
    for lineage, hide in LINEAGES.items():
        if not hide:
            results[lineage] = {"note": "no cells of this lineage in the data"}
            continue
        t0 = time.perf_counter()
        partial, trust = _without(reference, regions, hide)
        row = _score(partial, query, truth, hide, "knn")
        rule = trust["unknown_rule"]
        row.update(
            {
                "hidden_types": list(hide),
                "signal": rule["signal"],
                "calibrated_recall": rule["recall"],
                "calibrated_fpr": rule["fpr"],
                "seconds": time.perf_counter() - t0,
            }
        )
        results[lineage] = row
        print(lineage, json.dumps(row, default=float), flush=True)
    results["seconds"] = time.perf_counter() - started
    OUT.write_text(json.dumps(results, indent=1, default=float))
    print(json.dumps(results["full reference"], indent=1))


if __name__ == "__main__":
    main()
