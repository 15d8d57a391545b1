"""The stored neighbour graph and st.cache_resource: what a resolution change and a rerun cost.

``python -m benchmarks.neighbors`` (about a minute). On the demo query (1,550 cells,
projected onto the built-in reference) and on a 20,000-cell resample of it (demo
embeddings with small noise), median of ``--repeats`` runs, all in this process:

* ``tl.neighbors`` once (the kNN search and the sparse graph, stored in ``obsp``);
* a new resolution, before: ``build_knn_graph`` + Louvain (what ``tl.cluster`` did on every
  call) against now: ``tl.cluster`` on the stored graph (igraph built from ``obsp`` +
  Louvain);
* what ``st.cache_data`` paid on every rerun of a page for the graph and the projection
  (pickle + unpickle of the returned object, which ``st.cache_resource`` does not do).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time

import numpy as np


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _roundtrip(value: object) -> None:
    pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def measure(space: np.ndarray, projection: object, repeats: int) -> dict:
    """Seconds of each step on one analysis space."""
    import anndata as ad
    import pandas as pd

    import scembed_core as se
    from scembed_core.cluster import build_knn_graph, louvain

    holder = ad.AnnData(obs=pd.DataFrame(index=np.arange(len(space)).astype(str)))
    holder.obsm["X_scembed_whitened"] = space
    row = {"n_cells": len(space)}
    row["neighbors_s"] = _median_seconds(lambda: se.tl.neighbors(holder), repeats)
    row["rebuild_and_louvain_s"] = _median_seconds(
        lambda: louvain(build_knn_graph(space, 15), 0.8, seed=0), repeats
    )
    row["stored_graph_louvain_s"] = _median_seconds(
        lambda: se.tl.cluster(holder, 0.8, copy=True), repeats
    )
    graph = build_knn_graph(space, 15)
    row["pickle_graph_s"] = _median_seconds(lambda: _roundtrip(graph), repeats)
    if projection is not None:
        row["pickle_projection_s"] = _median_seconds(lambda: _roundtrip(projection), repeats)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, default=20_000)
    args = parser.parse_args()
    from scembed_core.io import read_dataset
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference

    reference = load_default_reference()
    projection = project(read_dataset(DEMO_QUERY_PATH), reference, ev=False)
    space = np.asarray(projection.space, dtype=np.float32)
    rows = [measure(space, projection, args.repeats)]
    rng = np.random.default_rng(0)
    finite = space[np.isfinite(space).all(axis=1)]
    large = finite[rng.integers(0, len(finite), args.large)]
    large = large + rng.normal(scale=0.05 * finite.std(), size=large.shape).astype(np.float32)
    rows.append(measure(large.astype(np.float32), None, args.repeats))
    header = (
        "| cells | tl.neighbors (once) | new resolution, before: graph + Louvain | "
        "now: tl.cluster on the stored graph | cache_data pickle round trip: graph | "
        "projection |"
    )
    print(header)
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        projection_s = row.get("pickle_projection_s")
        print(
            f"| {row['n_cells']:,} | {row['neighbors_s']:.3f} s | "
            f"{row['rebuild_and_louvain_s']:.3f} s | {row['stored_graph_louvain_s']:.3f} s | "
            f"{row['pickle_graph_s']:.3f} s | "
            + (f"{projection_s:.3f} s |" if projection_s is not None else "- |")
        )


if __name__ == "__main__":
    main()
