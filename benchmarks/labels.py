"""Label quality: the reference classifier vs the kNN vote, its ablations and calibration.

``python -m benchmarks.labels`` (a few minutes on 2 cores) measures, on the built-in
reference (Granja 2019 BMMC donor D6T1, frozen vectors):

1. Cross-validation on the reference cells only (stratified folds, never the demo query):
   the kNN vote and logistic-regression variants (feature space, class weighting, C, kNN
   blend), each scored on the intact held-out fold and on the same cells with 50% of
   their non-zeros dropped and re-embedded (a proxy for depth/donor shift). The default of
   :class:`scembed_core.labels.classifier.LabelModelParams` is the best mean of accuracy and
   macro-F1 over both.
2. Within-donor results on the demo query (held-out cells of the SAME donor, so they
   overstate what an unseen donor gives): accuracy, macro-F1, lineage accuracy, accuracy
   of the 80% most confident cells, and calibration (ECE, reliability plot).
3. LSI (TF-IDF + SVD) with the same classifier and the same kNN rule.

It writes ``benchmarks/results/labels.json``, ``benchmarks/figures/label_reliability.png``
and the ``bench-labels`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from . import report as rp
from .common import LABEL_KEY, LSI, load_granja

DROPOUT = 0.5
N_FOLDS = 3
CV_SEEDS = (0, 1, 2)
SPACES = ("plain", "whitened", "both")
WEIGHTS = (None, "balanced")
C_GRID = (0.03, 0.1, 0.3, 1.0)
BLEND_GRID = (0.0, 0.25, 0.5)
K = 15
#: Coarse lineages of the 16 Granja types (the issue's T/NK/B/monocyte/progenitor bar).
LINEAGE = {
    "CD4.N1": "T", "CD4.N2": "T", "CD4.M": "T", "CD8.N": "T", "CD8.CM": "T", "CD8.EM": "T",
    "NK": "NK", "B": "B", "Pre.B": "B", "CD14.Mono.1": "Mono", "CD14.Mono.2": "Mono",
    "HSC": "Progenitor", "CMP.LMPP": "Progenitor", "GMP": "Progenitor",
    "CLP.1": "Progenitor", "CLP.2": "Progenitor",
}  # fmt: skip


def scores(truth: np.ndarray, predicted: np.ndarray, confidence: np.ndarray | None = None) -> dict:
    """Accuracy, macro-F1, lineage accuracy and accuracy of the 80% most confident cells."""
    from sklearn.metrics import f1_score

    truth = np.asarray(truth, dtype=object).astype(str)
    predicted = np.asarray(predicted, dtype=object).astype(str)
    out = {
        "accuracy": float((truth == predicted).mean()),
        "macro_f1": float(
            f1_score(truth, predicted, labels=np.unique(truth), average="macro", zero_division=0)
        ),
        "lineage_accuracy": float(
            (
                pd.Series(truth).map(LINEAGE).to_numpy()
                == pd.Series(predicted).map(LINEAGE).to_numpy()
            ).mean()
        ),
    }
    if confidence is not None:
        order = np.argsort(-np.nan_to_num(np.asarray(confidence, float), nan=-1), kind="stable")
        top = order[: int(round(0.8 * len(order)))]
        out["accuracy_top80"] = float((truth[top] == predicted[top]).mean())
    return out


def _knn_proba(train_space, train_codes, test_space, n_classes, seed=0):
    from scembed_core.knn import build_cell_index, knn_query
    from scembed_core.labels.vote import vote_fractions

    index = build_cell_index(train_space, seed=seed)
    found, _ = knn_query(index, test_space, K)
    return vote_fractions(found, train_codes, n_classes)


def _fit_proba(params, train_x, train_y, test_sets, whitening):
    from scembed_core.labels.classifier import features_of, fit_label_model

    model = fit_label_model(train_x, train_y, whitening=whitening, params=params, calibrate=False)
    return [model.predict_proba(features_of(x, whitening, params.space)) for x in test_sets]


def cross_validate(reference, dropped_embedding: np.ndarray, seeds=(0,), log=print) -> dict:
    """Staged ablation by stratified CV on the reference cells (intact + dropout folds)."""
    from sklearn.model_selection import StratifiedKFold

    from scembed_core.labels.classifier import LabelModelParams, blend

    x = np.asarray(reference.cells.obsm["X_scembed"], np.float32)
    y = reference.cells.obs[LABEL_KEY].astype(str).to_numpy()
    classes, codes = np.unique(y, return_inverse=True)
    whitening = reference.whitening
    space = whitening.transform(x)
    dropped_space = whitening.transform(dropped_embedding)
    rows: list[dict] = []

    def folds(seed):
        return StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed).split(x, codes)

    def evaluate(name, proba_of_fold, seed, stage):
        per = {"intact": [], "dropout": []}
        for fold, (train, test) in enumerate(folds(seed)):
            intact, dropped = proba_of_fold(fold, train, test)
            for key, proba in (("intact", intact), ("dropout", dropped)):
                per[key].append(scores(y[test], classes[proba.argmax(axis=1)]))
        row = {"config": name, "stage": stage, "seed": seed}
        for key in per:
            for metric in ("accuracy", "macro_f1", "lineage_accuracy"):
                row[f"{key}_{metric}"] = float(np.mean([s[metric] for s in per[key]]))
        row["score"] = float(
            np.mean([row[f"{k}_{m}"] for k in per for m in ("accuracy", "macro_f1")])
        )
        rows.append(row)
        log(f"  {name} (seed {seed}): score {row['score']:.4f}")
        return row

    knn_cache: dict = {}

    def knn_fold(seed):
        def run(fold, train, test):
            key = (seed, fold)
            if key not in knn_cache:
                knn_cache[key] = [
                    _knn_proba(space[train], codes[train], s[test], len(classes))
                    for s in (space, dropped_space)
                ]
            return knn_cache[key]

        return run

    fit_cache: dict = {}

    def clf_fold(params, seed):
        def run(fold, train, test):
            key = (params.space, params.C, params.class_weight, seed, fold)
            if key not in fit_cache:
                fit_cache[key] = _fit_proba(
                    params, x[train], y[train], [x[test], dropped_embedding[test]], whitening
                )
            clf = fit_cache[key]
            if params.knn_weight == 0:
                return clf
            knn = knn_fold(seed)(fold, train, test)
            return [blend(c, k, params.knn_weight) for c, k in zip(clf, knn, strict=True)]

        return run

    def label(p):
        weight = p.class_weight or "none"
        return f"LR {p.space}, C={p.C:g}, weight={weight}, kNN blend={p.knn_weight:g}"

    seed = seeds[0]
    evaluate("kNN vote (k=15, whitened)", knn_fold(seed), seed, "baseline")
    stage_a = {}
    for space_name in SPACES:
        for weight in WEIGHTS:
            p = LabelModelParams(space=space_name, C=0.1, class_weight=weight)
            stage_a[p] = evaluate(label(p), clf_fold(p, seed), seed, "space x weighting")
    best = max(stage_a, key=lambda p: stage_a[p]["score"])
    stage_b = {best: stage_a[best]}
    for c in C_GRID:
        p = LabelModelParams(space=best.space, C=c, class_weight=best.class_weight)
        if p not in stage_b:
            stage_b[p] = evaluate(label(p), clf_fold(p, seed), seed, "regularisation C")
    best = max(stage_b, key=lambda p: stage_b[p]["score"])
    stage_c = {best: stage_b[best]}
    for w in BLEND_GRID[1:]:
        p = LabelModelParams(
            space=best.space, C=best.C, class_weight=best.class_weight, knn_weight=w
        )
        stage_c[p] = evaluate(label(p), clf_fold(p, seed), seed, "kNN blend")
    best = max(stage_c, key=lambda p: stage_c[p]["score"])
    for extra in seeds[1:]:
        evaluate("kNN vote (k=15, whitened)", knn_fold(extra), extra, "seeds")
        evaluate(label(best), clf_fold(best, extra), extra, "seeds")
    return {"rows": rows, "chosen": best.to_dict(), "chosen_label": label(best)}


def _dropped_reference_embedding(reference, split) -> np.ndarray:
    """The reference cells with 50% of their non-zeros dropped, re-embedded (frozen vectors)."""
    import anndata as ad

    from scembed_core.evaluate import drop_nonzeros
    from scembed_core.project import compute_coverage, embed_cells

    cells = split.adata[reference.cells.obs_names]
    corrupted = ad.AnnData(drop_nonzeros(cells.X, DROPOUT, seed=0), obs=cells.obs, var=cells.var)
    embedding = embed_cells(compute_coverage(corrupted, reference.model), reference.model)
    # cells that lost every region keep their intact embedding (few; counted in the report)
    lost = ~np.isfinite(embedding).all(axis=1)
    embedding[lost] = np.asarray(reference.cells.obsm["X_scembed"])[lost]
    return embedding.astype(np.float32)


def within_donor(reference, split, chosen: dict, log=print) -> dict:
    """Demo-query results for kNN and classifier variants, plus LSI with the same rules."""
    import anndata as ad

    from scembed_core.labels.assign import assign_labels, probabilities_of
    from scembed_core.labels.classifier import (
        LabelModelParams,
        calibration_summary,
        fit_label_model,
    )
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH

    query = ad.read_h5ad(DEMO_QUERY_PATH)
    truth = query.obs[LABEL_KEY].astype(str).to_numpy()
    projection = project(query, reference, ev=False)
    x = np.asarray(reference.cells.obsm["X_scembed"], np.float32)
    y = reference.cells.obs[LABEL_KEY].astype(str).to_numpy()
    base = LabelModelParams(**chosen)
    variants = {
        "kNN vote (k=15)": None,
        "LR default (CV choice)": base,
        "LR class_weight=balanced": LabelModelParams(**{**chosen, "class_weight": "balanced"}),
        "LR whitened space": LabelModelParams(**{**chosen, "space": "whitened"}),
        "LR + kNN blend 0.5": LabelModelParams(**{**chosen, "knn_weight": 0.5}),
    }
    rows, calibrations = [], {}
    import dataclasses

    for name, params in variants.items():
        if params is None:
            frame = assign_labels(
                projection.embedding, reference, method="knn", neighbors=projection.neighbors
            )
        else:
            model = fit_label_model(
                x,
                y,
                whitening=reference.whitening,
                label_key=LABEL_KEY,
                params=params,
                calibrate=False,
            )
            variant = dataclasses.replace(reference, label_model=model)
            frame = assign_labels(projection.embedding, variant, neighbors=projection.neighbors)
        proba = probabilities_of(frame)
        classes = np.asarray(
            [c.removeprefix("prob:") for c in frame.columns if c.startswith("prob:")]
        )
        codes = pd.Index(classes).get_indexer(truth)
        calibration = calibration_summary(proba, codes)
        calibrations[name] = calibration
        row = {"method": f"scEmbed + {name}", **scores(truth, frame["label"], frame["confidence"])}
        row["ece"] = calibration["ece"]
        rows.append(row)
        log(f"  demo {name}: {row}")
    # LSI with the same classifier and kNN rule
    started = time.perf_counter()
    lsi = LSI(30, seed=0)
    ref_raw = split.adata[reference.cells.obs_names]
    lsi_ref = lsi.fit_transform(ref_raw.X)
    lsi_query = lsi.transform(split.adata[query.obs_names].X)
    from scembed_core.labels.classifier import features_of

    model = fit_label_model(
        lsi_ref, y, params=dataclasses.replace(base, space="plain", knn_weight=0), calibrate=False
    )
    proba = model.predict_proba(features_of(lsi_query, None, "plain"))
    codes = pd.Index(model.classes).get_indexer(truth)
    row = {
        "method": "LSI + LR (same C, weighting)",
        **scores(truth, np.asarray(model.classes)[proba.argmax(1)], proba.max(1)),
    }
    row["ece"] = calibration_summary(proba, codes)["ece"]
    rows.append(row)
    knn = _knn_proba(lsi_ref, pd.Index(model.classes).get_indexer(y), lsi_query, len(model.classes))
    row = {
        "method": "LSI + kNN vote (k=15)",
        **scores(truth, np.asarray(model.classes)[knn.argmax(1)], knn.max(1)),
    }
    row["ece"] = calibration_summary(knn, codes)["ece"]
    rows.append(row)
    log(f"  LSI done in {time.perf_counter() - started:.1f} s")
    return {"rows": rows, "calibration": calibrations}


def plot_reliability(curves: dict[str, dict], path) -> None:
    """Reliability diagram: mean predicted top probability vs observed accuracy per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for name, cal in curves.items():
        rel = cal["reliability"]
        pts = [
            (p, a)
            for p, a in zip(rel["mean_predicted"], rel["accuracy"], strict=True)
            if p is not None
        ]
        if pts:
            px, py = zip(*pts, strict=True)
            left.plot(px, py, marker="o", label=f"{name} (ECE {cal['ece']:.3f})")
        cov = cal["coverage"]
        right.plot(cov["coverage"], cov["accuracy"], marker=".", label=name)
    left.set_xlabel("mean predicted probability (top class)")
    left.set_ylabel("observed accuracy")
    left.set_title("Reliability")
    left.legend(fontsize=7)
    right.set_xlabel("share of cells labelled (coverage)")
    right.set_ylabel("accuracy of labelled cells")
    right.set_title("Accuracy vs coverage (probability threshold)")
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(results: dict) -> str:
    """The ``bench-labels`` section of BENCHMARKS.md."""
    cv = pd.DataFrame(results["cv"]["rows"])
    out = [
        "## `python -m benchmarks.labels`: the label classifier, its ablations and calibration",
        rp.command("PYTHONPATH=. PYTHONHASHSEED=0 python -m benchmarks.labels"),
        rp.facts_block(results["facts"]),
        f"- Wall time {rp.seconds(results['seconds'])}: about 45 lbfgs fits on ~5,900 cells "
        "(more than the few minutes aimed for on this shared, loaded machine). The demo "
        "numbers and the fits are deterministic; the fold seed changes only the CV splits. "
        "SnapATAC2 with the same classifier is not in this table (it needs the peers "
        "environment of `make bench-peers`).",
        "",
        "### Cross-validation on the reference cells (the default is chosen here)",
        f"{N_FOLDS}-fold stratified CV on the built-in reference's {results['n_reference']:,} "
        "cells (donor D6T1), frozen region vectors. *intact*: the held-out fold as is; "
        f"*dropout*: the same cells with {DROPOUT:.0%} of their non-zeros removed and "
        "re-embedded (a depth/donor-shift proxy; "
        f"{results['n_lost']} cells lost every region and kept their intact embedding). "
        "Score = mean of accuracy and macro-F1 over intact and dropout. Stages: space × "
        "weighting at C=0.1, then C for the best, then the kNN blend for the best; the last "
        "rows repeat the winner and kNN with other fold seeds.",
        rp.table(
            [
                [
                    r["stage"],
                    r["config"],
                    r["seed"],
                    rp.fmt(r["intact_accuracy"]),
                    rp.fmt(r["intact_macro_f1"]),
                    rp.fmt(r["dropout_accuracy"]),
                    rp.fmt(r["dropout_macro_f1"]),
                    rp.fmt(r["dropout_lineage_accuracy"]),
                    rp.fmt(r["score"]),
                ]
                for r in cv.to_dict("records")
            ],
            [
                "stage",
                "configuration",
                "fold seed",
                "acc",
                "macro-F1",
                "acc (dropout)",
                "macro-F1 (dropout)",
                "lineage acc (dropout)",
                "score",
            ],
            "llrrrrrrr",
        ),  # fmt: skip
        f"CV choice: **{results['cv']['chosen_label']}** (the default of "
        "`LabelModelParams`: " + ("matches" if results["default_matches"] else "DIFFERS") + ").",
        "",
        "### Within donor: the demo query (1,550 held-out cells of the SAME donor)",
        "These cells come from the reference's own donor, so they overstate what an unseen "
        "donor gives. The issue's bar (accuracy ≥ 0.72, macro-F1 ≥ 0.59, lineage ≥ 0.92, "
        "≥ 0.78 on the 80% most confident) is for an unseen donor, whose data is not "
        "available here: **it was not measured by this benchmark.**",
        rp.table(
            [
                [
                    r["method"],
                    rp.fmt(r["accuracy"]),
                    rp.fmt(r["macro_f1"]),
                    rp.fmt(r["lineage_accuracy"]),
                    rp.fmt(r.get("accuracy_top80")),
                    rp.fmt(r["ece"]),
                ]
                for r in results["demo"]["rows"]
                + ([results["demo"]["stored"]["row"]] if "stored" in results["demo"] else [])
            ],
            ["method", "accuracy", "macro-F1", "lineage acc", "acc (80% most confident)", "ECE"],
        ),  # fmt: skip
        "",
        "### Calibration",
        "The rows above fit each variant on all reference cells without a temperature; the "
        "last row is the bundle's stored model, whose temperature "
        f"({rp.fmt(results.get('stored_temperature'))}) was fitted on a stratified 20% "
        "hold-out of the reference cells (seed 0) when the model was built. On that "
        f"hold-out: ECE {rp.fmt(results['stored_calibration']['ece'])}, accuracy "
        f"{rp.fmt(results['stored_calibration']['accuracy'])} (slightly optimistic: the one "
        "temperature parameter was fitted on the same cells). The figure shows it with the "
        "demo query's reliability for the stored classifier and the kNN vote.",
        rp.figure(results["figure"], "reliability and accuracy-coverage curves"),
    ]
    return "\n\n".join(out)


def run(log=print, seeds=CV_SEEDS) -> dict:
    """Run everything; returns the results dictionary."""
    from scembed_core.labels.classifier import fit_label_model
    from scembed_core.reference import load_default_reference

    started = time.perf_counter()
    facts = rp.machine_facts()
    reference = load_default_reference()
    split = load_granja()
    log("re-embedding the reference cells with 50% dropout")
    dropped = _dropped_reference_embedding(reference, split)
    n_lost = int((dropped == np.asarray(reference.cells.obsm["X_scembed"])).all(axis=1).sum())
    log("cross-validation")
    cv = cross_validate(reference, dropped, seeds=seeds, log=log)
    log(f"chosen: {cv['chosen_label']}")
    demo = within_donor(reference, split, cv["chosen"], log=log)
    stored = reference.label_model.calibration if reference.label_model is not None else None
    if not stored:
        x = np.asarray(reference.cells.obsm["X_scembed"])
        y = reference.cells.obs[LABEL_KEY].astype(str).to_numpy()
        stored = fit_label_model(x, y, whitening=reference.whitening).calibration
    return {
        "facts": facts,
        "seconds": time.perf_counter() - started,
        "n_reference": int(reference.n_cells),
        "n_lost": n_lost,
        "cv": cv,
        "demo": demo,
        "stored_calibration": stored,
    }


def stored_model_on_demo(reference) -> dict:
    """The built-in bundle's own classifier (with its temperature) on the demo query."""
    import anndata as ad

    from scembed_core.labels.assign import assign_labels, label_classes, probabilities_of
    from scembed_core.labels.classifier import calibration_summary
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH

    query = ad.read_h5ad(DEMO_QUERY_PATH)
    truth = query.obs[LABEL_KEY].astype(str).to_numpy()
    projection = project(query, reference, ev=False)
    frame = assign_labels(projection.embedding, reference, neighbors=projection.neighbors)
    codes = pd.Index(label_classes(frame)).get_indexer(truth)
    calibration = calibration_summary(probabilities_of(frame), codes)
    row = {"method": "scEmbed + stored built-in classifier (CV choice + temperature)"}
    row.update(scores(truth, frame["label"], frame["confidence"]))
    row["ece"] = calibration["ece"]
    return {"row": row, "calibration": calibration}


def _finish(results: dict) -> dict:
    """Calibration of the bundle's stored model, the figure, and whether the default is the
    CV choice (re-done by ``--from-json`` after the bundle's model was refitted)."""
    from scembed_core.labels.classifier import DEFAULT_PARAMS
    from scembed_core.reference import load_default_reference

    reference = load_default_reference()
    if reference.label_model is not None:
        results["stored_calibration"] = reference.label_model.calibration
        results["stored_params"] = reference.label_model.params.to_dict()
        results["stored_temperature"] = reference.label_model.temperature
        results["demo"]["stored"] = stored_model_on_demo(reference)
    results["default_matches"] = results["cv"]["chosen"] == DEFAULT_PARAMS.to_dict()
    figure = rp.FIGURES / "label_reliability.png"
    curves = {"reference hold-out (stored model)": results["stored_calibration"]}
    if "stored" in results["demo"]:
        curves["demo: stored classifier"] = results["demo"]["stored"]["calibration"]
    else:
        curves["demo: classifier"] = results["demo"]["calibration"]["LR default (CV choice)"]
    curves["demo: kNN vote"] = results["demo"]["calibration"]["kNN vote (k=15)"]
    plot_reliability(curves, figure)
    results["figure"] = figure
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="rewrite the figure and the report from benchmarks/results/labels.json",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        import json

        results = json.loads((rp.RESULTS / "labels.json").read_text())
    else:
        results = run(log=lambda m: print(m, flush=True))
    results = _finish(results)
    rp.save_results("labels", {k: v for k, v in results.items() if k != "figure"})
    if not args.no_report:
        rp.replace_section("bench-labels", section(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
