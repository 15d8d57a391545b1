"""The label classifier's fit on one thread against the libraries' default threads.

Run with ``python -m benchmarks.classifier_threads``: fits the reference label classifier's
logistic regression (:data:`scembed_core.labels.classifier.DEFAULT_PARAMS`, standardised
features of the built-in reference's 8,785 cells) with scikit-learn's default BLAS/OpenMP
threads and inside ``threadpool_limits(1)`` (what :func:`fit_label_model` does since this
round), interleaved so both see the same load; prints the table, rewrites the
``classifier-threads`` section of BENCHMARKS.md and saves the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _fit(x: np.ndarray, codes: np.ndarray, threads: int | None) -> tuple[float, np.ndarray, int]:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from scembed_core.labels.classifier import DEFAULT_PARAMS

    model = LogisticRegression(C=DEFAULT_PARAMS.C, max_iter=DEFAULT_PARAMS.max_iter, random_state=0)
    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        model.fit(x, codes)
    return time.perf_counter() - started, model.coef_, int(model.n_iter_[0])


def main(argv: list[str] | None = None) -> dict:
    """Measure and print the figures; returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    from scembed_core.labels.classifier import DEFAULT_PARAMS, features_of
    from scembed_core.reference import load_default_reference

    from . import report as rp

    facts = rp.machine_facts()
    reference = load_default_reference()
    cells = reference.cells
    key = reference.default_label_key
    _, codes = np.unique(cells.obs[key].astype(str).to_numpy(), return_inverse=True)
    x = features_of(np.asarray(cells.obsm["X_scembed"]), reference.whitening, DEFAULT_PARAMS.space)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-12, x.std(axis=0), 1.0)
    conditions = {"default threads": None, "one thread (the product)": 1}
    seconds: dict[str, list[float]] = {name: [] for name in conditions}
    coefs: dict[str, np.ndarray] = {}
    iters: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, threads in conditions.items():
            took, coefs[name], iters[name] = _fit(x, codes, threads)
            seconds[name].append(took)
    diff = float(np.abs(coefs["default threads"] - coefs["one thread (the product)"]).max())
    rows = [
        f"| {name} | {statistics.median(times):.2f} s | {min(times):.2f}-{max(times):.2f} s "
        f"| {iters[name]} |"
        for name, times in seconds.items()
    ]
    body = "\n".join(
        [
            "## Label classifier fit: one thread vs the default threads",
            "",
            f"Command: `python -m benchmarks.classifier_threads --repeats {args.repeats}`.",
            "",
            rp.facts_block(facts),
            "",
            f"Logistic regression of the label classifier on the built-in reference's "
            f"{x.shape[0]:,} cells x {x.shape[1]} features ({len(np.unique(codes))} types), "
            f"C = {DEFAULT_PARAMS.C}; the conditions alternate, so they share the load.",
            "",
            "| threads | median fit | range | lbfgs iterations |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"Largest coefficient difference between the two: {diff:.1e}.",
        ]
    )
    print(body)
    results = {"facts": facts, "seconds": seconds, "iterations": iters, "max_coef_diff": diff}
    if not args.no_write:
        rp.save_results("classifier_threads", results)
        rp.replace_section("classifier-threads", body)
    return results


if __name__ == "__main__":
    main()
