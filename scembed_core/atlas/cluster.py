"""Clustering millions of cells: Louvain on a subsample, nearest centroid for the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._types import ProgressCallback
from ..errors import ParameterError, renamed_keyword
from ..labels.clusters import cluster_vote
from ..labels.unknown import CLUSTER_SHARE, UNKNOWN
from ..labels.vote import UNASSIGNED
from ..results import CLUSTER, CLUSTER_LABEL, LABEL, cluster_params, record_into
from ..stopping import check_stop
from ._store import (
    ARRAY_ATTRS,
    CATEGORICAL_ATTRS,
    CLUSTER_COLUMNS,
    blocks,
    consolidate,
    drop_obs_columns,
    replace_elem,
    set_attrs,
)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def _rows_at(array: Any, rows: np.ndarray, block: int) -> np.ndarray:
    """Rows ``rows`` (sorted) of a 2-D array, reading one block of rows at a time."""
    parts = []
    for begin, end in blocks(int(array.shape[0]), block):
        lo, hi = np.searchsorted(rows, [begin, end])
        if hi > lo:
            parts.append(np.asarray(array[begin:end], dtype=np.float32)[rows[lo:hi] - begin])
    return np.vstack(parts) if parts else np.empty((0, array.shape[1]), np.float32)


def cluster_large(
    embedding: str | Path | Any,
    *,
    n_sample: int = 50_000,
    resolution: float = 1.0,
    n_clusters: int | None = None,
    method: str = "louvain",
    n_neighbors: int = 15,
    random_state: int = 0,
    chunk_size: int = 100_000,
    progress: ProgressCallback | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Cluster millions of cells: Louvain on a uniform subsample, nearest centroid for the rest.

    A uniform random subsample of ``n_sample`` cells is clustered by the verbs that
    cluster a small dataset, :func:`scembed_core.tl.neighbors` then
    :func:`scembed_core.tl.cluster` (cosine kNN graph, Louvain or Leiden at
    ``resolution``, or the resolution search for ``n_clusters``). Each cluster's
    centroid is the normalised mean of its cells' unit embeddings; every cell outside the
    sample joins the cluster whose centroid is most cosine-similar, read and assigned chunk
    by chunk. Sampled cells keep their graph label, so a dataset of at most ``n_sample``
    cells gets exactly the labels of full Louvain.

    Trade-off: memory and graph time depend on ``n_sample``, not on the number of cells
    (the assignment pass is linear and cheap), at three costs. A population rarer than a
    few cells in ``n_sample`` (frequency below ~1/``n_sample`` times the minimum cluster
    size) cannot form its own cluster and is absorbed by its nearest neighbour; centroid
    assignment draws straight (Voronoi) borders, so cells on the border of two
    non-convex clusters may land differently than full-graph Louvain would put them; and
    the meaning of ``resolution`` shifts slightly with graph size, so the same value gives
    similar but not identical granularity at another ``n_sample``. Raise ``n_sample``
    (memory ~ ``n_sample x n_neighbors``) for rare populations.

    Parameters
    ----------
    embedding
        An output store of :func:`project_out_of_core`, whose analysis space is clustered
        (``obsm["X_scembed_whitened"]``, else ``obsm["X_scembed"]``, as in the in-memory
        pipeline) and which receives ``obs["scembed_cluster"]`` and
        ``obs["scembed_cluster_label"]``; or any 2-D array-like that supports row slicing
        (numpy, zarr, h5py).
    n_sample
        Cells in the subsample that is clustered as a graph.
    resolution
        Louvain/Leiden resolution (ignored when ``n_clusters`` is given).
    n_clusters
        Search the resolution that gives this many clusters on the subsample.
    method
        ``"louvain"`` or ``"leiden"``.
    n_neighbors
        Neighbours in the subsample's kNN graph.
    random_state
        Seeds the subsample, its graph and the community detection.
    chunk_size
        Cells read per step of the assignment pass.
    progress
        ``progress(fraction, message)`` callback.
    seed
        Deprecated name of ``random_state``.

    Returns
    -------
    numpy.ndarray
        ``(n_cells,)`` int64 cluster labels, 0 the largest cluster of the subsample; -1 for
        cells without an embedding.
    """
    random_state = int(renamed_keyword("seed", seed, "random_state", random_state, 0))
    seed = random_state
    if n_sample < 2:
        raise ParameterError(f"n_sample must be >= 2, got {n_sample}.")
    if chunk_size < 1:
        raise ParameterError(f"chunk_size must be >= 1, got {chunk_size}.")
    report = progress or (lambda fraction, message: None)
    root = None
    if isinstance(embedding, str | Path):
        import zarr

        root = zarr.open_group(str(embedding), mode="r+", use_consolidated=False)
        obsm = root["obsm"]
        array = obsm["X_scembed_whitened" if "X_scembed_whitened" in obsm else "X_scembed"]
    else:
        array = embedding
    n = int(array.shape[0])
    rng = np.random.default_rng(seed)
    sample = np.arange(n) if n <= n_sample else np.sort(rng.choice(n, n_sample, replace=False))
    report(0.0, f"Reading a subsample of {len(sample):,} cells")
    points = _rows_at(array, sample, chunk_size)
    report(0.2, "Clustering the subsample (kNN graph + community detection)")
    sample_labels, resolution = _cluster_sample(
        points, resolution, n_clusters, method=method, n_neighbors=n_neighbors, seed=seed
    )
    k = int(sample_labels.max()) + 1 if (sample_labels >= 0).any() else 0
    unit = _unit(points[sample_labels >= 0])
    centroids = np.zeros((k, array.shape[1]), dtype=np.float32)
    np.add.at(centroids, sample_labels[sample_labels >= 0], unit)
    centroids = _unit(centroids)
    del points, unit

    labels = np.full(n, -1, dtype=np.int64)
    for step, (begin, end) in enumerate(blocks(n, chunk_size)):
        check_stop("The atlas clustering")
        block = np.asarray(array[begin:end], dtype=np.float32)
        valid = np.isfinite(block).all(axis=1)
        if k and valid.any():
            labels[begin:end][valid] = (_unit(block[valid]) @ centroids.T).argmax(axis=1)
        fraction = min(1.0, (step + 1) * chunk_size / max(n, 1))
        report(0.3 + 0.6 * fraction, "Assigning cells to clusters")
    labels[sample] = sample_labels
    if root is not None:
        from anndata.io import read_elem

        uns = read_elem(root["uns/scembed"]) if "scembed" in root["uns"] else {}
        threshold = (uns.get("project") or {}).get("params", {}).get("mapping_distance_threshold")
        table = _write_clusters(root, labels, k, chunk_size, threshold)
        params = cluster_params(
            method=method,
            resolution=resolution,
            n_clusters_requested=n_clusters,
            n_neighbors=n_neighbors,
            random_state=seed,
        )
        params.update(n_clusters=k, n_sample=int(len(sample)))
        record_into(uns, "cluster", params)
        if table is not None:
            params = {"key_added": CLUSTER_LABEL, "cluster_key": CLUSTER, "label_key": LABEL}
            record_into(uns, "annotate_clusters", params)["cluster_table"] = table
        replace_elem(root["uns"], "scembed", uns)
        consolidate(Path(str(embedding)))
    report(1.0, "Clustering done")
    return labels


def _cluster_sample(
    points: np.ndarray,
    resolution: float,
    n_clusters: int | None,
    *,
    method: str,
    n_neighbors: int,
    seed: int,
) -> tuple[np.ndarray, float]:
    """Cluster the subsample with the in-memory verbs; its codes and the resolution used."""
    import anndata as ad

    from .. import tl
    from ..results import ANALYSIS, cluster_codes

    sample = ad.AnnData(obs=pd.DataFrame(index=np.arange(len(points)).astype(str)))
    sample.obsm[ANALYSIS] = points
    tl.neighbors(sample, n_neighbors, use_rep=ANALYSIS, random_state=seed)
    tl.cluster(sample, resolution, n_clusters, method=method, random_state=seed)
    used = float(sample.uns["scembed"][CLUSTER]["params"]["resolution"])
    return cluster_codes(sample), used


def _write_clusters(
    root: Any, labels: np.ndarray, k: int, chunk_size: int, threshold: float | None
) -> pd.DataFrame | None:
    """Store the cluster columns of ``obs``; with labels, return the cluster table.

    ``obs["scembed_cluster"]`` always; with transferred labels also
    ``obs["scembed_cluster_label"]`` (the one vote, :func:`~scembed_core.labels.clusters.cluster_vote`)
    and ``obs["scembed_cluster_possibly_absent"]``, with the table of
    :func:`~scembed_core.labels.clusters.cluster_table` (its medians from the stored columns).
    """
    from anndata.io import write_elem

    n = len(labels)
    codes = np.where(labels >= 0, labels, k)
    names = [str(i) for i in range(k)] + [UNASSIGNED]
    drop_obs_columns(root, CLUSTER_COLUMNS)
    obs = root["obs"]
    rows = int(obs["scembed_n_regions"].chunks[0]) if "scembed_n_regions" in obs else chunk_size

    def column(name: str, values: Callable, categories: list[str] | None = None) -> None:
        if categories is None:
            out = obs.create_array(name, shape=(n,), chunks=(rows,), dtype="bool", fill_value=False)
        else:
            group = set_attrs(obs.create_group(name), CATEGORICAL_ATTRS)
            write_elem(group, "categories", np.asarray(categories, dtype=object))
            out = group.create_array(
                "codes", shape=(n,), chunks=(rows,), dtype="int32", fill_value=-1
            )
        set_attrs(out, ARRAY_ATTRS)
        for begin, end in blocks(n, rows):
            out[begin:end] = values(begin, end)

    column(CLUSTER, lambda b, e: codes[b:e], names)
    added = [CLUSTER]
    table = None
    if LABEL in obs:
        label_names = np.asarray(obs[f"{LABEL}/categories"][:], dtype=object)
        counts = np.zeros((k + 1, len(label_names)), dtype=np.int64)
        for begin, end in blocks(n, rows):
            lab = np.asarray(obs[f"{LABEL}/codes"][begin:end])
            cl = codes[begin:end]
            keep = lab >= 0
            np.add.at(counts, (cl[keep], lab[keep]), 1)
        sizes = np.bincount(codes, minlength=k + 1)
        counts[k] = 0  # cells without an embedding form no cluster
        cluster_label, agreement = cluster_vote(counts, label_names, sizes)
        is_unknown = label_names.astype(str) == UNKNOWN
        with np.errstate(invalid="ignore", divide="ignore"):
            share = counts[:, is_unknown].sum(axis=1) / np.maximum(sizes, 1)
        flagged = share >= CLUSTER_SHARE
        cluster_label = np.where(flagged, UNKNOWN, cluster_label.astype(str))
        medians = pd.DataFrame(
            {
                "code": codes,
                "confidence": np.asarray(obs[f"{LABEL}_confidence"][:], dtype=np.float64),
                "distance": np.asarray(obs["scembed_mapping_distance"][:], dtype=np.float64),
            }
        )
        medians = medians.groupby("code")[["confidence", "distance"]].median()
        medians = medians.reindex(np.arange(k + 1))
        table = pd.DataFrame(
            {
                "cluster": names,
                "label": cluster_label.astype(str),
                "agreement": agreement,
                "n_cells": sizes,
                "median_confidence": medians["confidence"].to_numpy(),
                "median_mapping_distance": medians["distance"].to_numpy(),
            }
        )
        table["unknown_share"] = share
        table["unknown"] = flagged
        distance = table["median_mapping_distance"].to_numpy()
        absent = np.zeros(k + 1, dtype=bool) if threshold is None else distance > threshold
        table["possibly_absent"] = absent
        table = table[table["n_cells"] > 0].reset_index(drop=True)
        label_categories = sorted(set(cluster_label.astype(str)))
        lookup = np.searchsorted(label_categories, cluster_label.astype(str))
        column("scembed_cluster_label", lambda b, e: lookup[codes[b:e]], label_categories)
        column("scembed_cluster_possibly_absent", lambda b, e: absent[codes[b:e]])
        added += ["scembed_cluster_label", "scembed_cluster_possibly_absent"]
    obs.attrs["column-order"] = list(obs.attrs.get("column-order", [])) + added
    return table
