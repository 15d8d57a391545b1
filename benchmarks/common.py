"""Shared pieces of the benchmarks: the Granja data and its split, the LSI baseline, the
three clustering methods, the kNN label-transfer rule, the generated timing workload and
running a command while measuring its wall time and peak memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scembed_core.regions import binary_signal

from .report import ROOT

GRANJA = ROOT.parent / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
LABEL_KEY = "cell_type"
#: The default reference's split (scripts/build_default_reference.py): first 15% of a
#: permutation with seed 0 are held out as the query.
HOLDOUT_FRACTION = 0.15
SPLIT_SEED = 0
KNN_K = 15
N_TYPES = 16


# --------------------------------------------------------------------------- data


@dataclass
class GranjaSplit:
    """The Granja BMMC_D6T1 cells split exactly as the default reference was built."""

    adata: object  # AnnData, all cells, binary X
    reference_idx: np.ndarray
    query_idx: np.ndarray

    @property
    def reference(self):
        """Reference cells (85%)."""
        return self.adata[self.reference_idx].copy()

    @property
    def query(self):
        """Held-out query cells (15%)."""
        return self.adata[self.query_idx].copy()


def split_cells(n_cells: int, fraction: float = HOLDOUT_FRACTION, seed: int = SPLIT_SEED):
    """(reference, query) indices, sorted: the same rule as the default-reference build."""
    order = np.random.default_rng(seed).permutation(n_cells)
    n_query = int(round(fraction * n_cells))
    return np.sort(order[n_query:]), np.sort(order[:n_query])


def load_granja(path: Path = GRANJA) -> GranjaSplit:
    """Read the Granja data with the engine's reader (binary X) and split it."""
    from scembed_core.io import read_dataset

    if not path.exists():
        raise FileNotFoundError(
            f"The Granja data is expected at {path} (the shared data folder beside the repo)."
        )
    adata = read_dataset(path)
    reference_idx, query_idx = split_cells(adata.n_obs)
    return GranjaSplit(adata, reference_idx, query_idx)


# --------------------------------------------------------------------------- LSI


class LSI:
    """TF-IDF + truncated SVD, the Signac/ArchR baseline.

    ``log1p(TF * IDF * 1e4)`` with TF = x / cell total and IDF = n_cells / region total
    (Signac ``RunTFIDF`` method 1), then a truncated SVD; the first component (which tracks
    sequencing depth) is dropped and each remaining component is standardised with the
    reference cells' mean and sd (Signac ``RunSVD``). Query cells are transformed with the
    IDF, SVD and scaling fitted on the reference.
    """

    def __init__(self, n_components: int = 30, seed: int = 0) -> None:
        self.n_components = n_components
        self.seed = seed

    def _tfidf(self, x: sp.csr_matrix) -> sp.csr_matrix:
        x = binary_signal(x)
        totals = np.asarray(x.sum(axis=1)).ravel()
        tf = sp.diags(1.0 / np.maximum(totals, 1)) @ x
        out = sp.csr_matrix(tf @ sp.diags(self.idf_))
        out.data = np.log1p(out.data * 1e4)
        return out

    def fit(self, x) -> LSI:
        """Fit IDF, SVD and scaling on reference cells."""
        from sklearn.decomposition import TruncatedSVD

        x = binary_signal(x)
        counts = np.asarray(x.sum(axis=0)).ravel()
        self.idf_ = x.shape[0] / np.maximum(counts, 1)
        self.svd_ = TruncatedSVD(self.n_components + 1, random_state=self.seed)
        raw = self.svd_.fit_transform(self._tfidf(x))[:, 1:]
        self.mean_ = raw.mean(axis=0)
        self.sd_ = raw.std(axis=0)
        return self

    def transform(self, x) -> np.ndarray:
        """LSI coordinates (components 2..n+1, scaled) of any cells over the same regions."""
        raw = self.svd_.transform(self._tfidf(x))[:, 1:]
        return ((raw - self.mean_) / np.where(self.sd_ > 0, self.sd_, 1)).astype(np.float32)

    def fit_transform(self, x) -> np.ndarray:
        """Fit on ``x`` and return its coordinates."""
        return self.fit(x).transform(x)


# --------------------------------------------------------------------------- scoring


def cluster_three_ways(
    embedding: np.ndarray, truth, k: int = N_TYPES, *, seed: int = 0, methods=None
) -> dict:
    """K-means, hierarchical (Ward) and Louvain (resolution searched to ``k``) scores.

    Returns ``{method: {"ari", "ami", "homogeneity", "n_clusters", "seconds"}}``.
    """
    from scembed_core import cluster, evaluate

    methods = methods or ("kmeans", "hc", "louvain")
    out = {}
    for method in methods:
        started = time.perf_counter()
        if method == "kmeans":
            labels = cluster.kmeans(embedding, k, seed=seed)
        elif method == "hc":
            labels = cluster.hierarchical(embedding, k)
        else:
            graph = cluster.build_knn_graph(embedding, seed=seed)
            labels = cluster.find_resolution(graph, k, seed=seed).labels
        scores = evaluate.clustering_scores(truth, labels)
        scores["n_clusters"] = cluster.n_clusters_of(np.asarray(labels))
        scores["seconds"] = time.perf_counter() - started
        out[method] = scores
    return out


def embedding_reference(embedding: np.ndarray, labels, name: str = "embedding"):
    """A labelled :class:`Reference` over any cell embedding, to reuse the engine's kNN rule.

    Label transfer then runs the exact code the app uses (hnswlib cosine index, k=15,
    majority vote) whatever method made the embedding.
    """
    import anndata as ad

    from scembed_core.knn import build_cell_index
    from scembed_core.model import RegionModel
    from scembed_core.reference import Reference
    from scembed_core.regions import GenomicRegions

    embedding = np.asarray(embedding, dtype=np.float32)
    cells = ad.AnnData(obs=pd.DataFrame({LABEL_KEY: np.asarray(labels, dtype=object)}))
    cells.obs_names = [f"c{i}" for i in range(len(embedding))]
    cells.obsm["X_scembed"] = embedding
    stub = RegionModel(GenomicRegions(["chr1"], [0], [1]), np.zeros((1, embedding.shape[1])), [1])
    return Reference(
        model=stub,
        cells=cells,
        manifest={"name": name, "label_keys": [LABEL_KEY]},
        index=build_cell_index(embedding),
    )


def transfer_and_score(query_embedding: np.ndarray, reference, truth) -> dict:
    """kNN label transfer (k=15, cosine majority) and accuracy / F1 against ``truth``.

    Runs the engine's one label rule (:func:`scembed_core.labels.assign.assign_labels`) with the
    kNN vote, so every embedding compared here is labelled the same way; the classifier is
    compared in ``benchmarks/labels.py``.
    """
    from scembed_core.evaluate import classification_report
    from scembed_core.labels.assign import assign_labels

    labels = assign_labels(query_embedding, reference, method="knn", label_key=LABEL_KEY, k=KNN_K)
    report = classification_report(np.asarray(truth, dtype=object), labels["label"].to_numpy())
    return {
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "weighted_f1": report.weighted_f1,
        "n_unassigned": report.n_unassigned,
        "per_class": report.per_class.set_index("label")["f1"].to_dict(),
        "support": report.per_class.set_index("label")["support"].astype(int).to_dict(),
        "confusion": report.confusion,
    }


# --------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    """A finished child process: exit status, wall seconds, peak RSS, and its output."""

    returncode: int
    wall: float
    peak_rss: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Measured:
        """Raise with the tail of stderr when the command failed."""
        if self.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {self.returncode}):\n{self.stderr[-3000:]}")
        return self


#: Tiny launcher that starts the measured command and reports its resource usage. It is
#: needed because Linux carries a process's peak RSS across ``exec`` into ``ru_maxrss``: a
#: child forked straight from a large benchmark process would report at least the parent's
#: RSS. Forked from this ~10 MB launcher instead, the child's peak is its own.
_LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as handle:
    json.dump({"wall": wall, "maxrss_kib": usage.ru_maxrss, "status": status}, handle)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    args: list[str], *, env: dict | None = None, cwd: Path = ROOT, timeout: float = 3600
) -> Measured:
    """Run a command; its wall time and peak RSS (``wait4`` in a small launcher process).

    The launcher forks the command and reports ``ru_maxrss`` of exactly that child, so the
    size of the calling process does not leak into the number (see ``_LAUNCHER``).
    """
    import json
    import signal

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", **(env or {})}
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", suffix=".json") as usage_file,
    ):
        launcher = [sys.executable, "-c", _LAUNCHER, usage_file.name, *args]
        started = time.perf_counter()
        proc = subprocess.Popen(
            launcher, stdout=out, stderr=err, env=full_env, cwd=cwd, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        wall = time.perf_counter() - started
        try:
            usage = json.loads(Path(usage_file.name).read_text())
            wall, peak = usage["wall"], usage["maxrss_kib"] * 1024
        except (OSError, ValueError, KeyError):
            peak = 0
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, wall, peak, out.read(), err.read())


def python_module(module: str, *args: str) -> list[str]:
    """Argument list running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def last_json(text: str) -> dict:
    """The JSON object printed on the last non-empty line of a worker's stdout."""
    import json

    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise RuntimeError("The worker printed nothing.")
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- workload

#: hg38 chromosome lengths (chr1..22, X) for spreading generated regions realistically.
HG38 = {
    "chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555,
    "chr5": 181538259, "chr6": 170805979, "chr7": 159345973, "chr8": 145138636,
    "chr9": 138394717, "chr10": 133797422, "chr11": 135086622, "chr12": 133275309,
    "chr13": 114364328, "chr14": 107043718, "chr15": 101991189, "chr16": 90338345,
    "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
    "chr21": 46709983, "chr22": 50818468, "chrX": 156040895,
}  # fmt: skip

WORKLOAD = {
    "n_cells": 10_000,
    "n_peaks": 100_000,
    "n_universe": 500_000,
    "density": 0.03,
    "dim": 100,
    "overlap_fraction": 0.8,
    "seed": 0,
}


def _sorted_regions(rng, n: int, widths: tuple[int, int]) -> pd.DataFrame:
    """``n`` regions spread over hg38 in proportion to chromosome length, sorted."""
    names = np.array(list(HG38))
    lengths = np.array(list(HG38.values()), dtype=np.int64)
    counts = rng.multinomial(n, lengths / lengths.sum())
    frames = []
    for chrom, length, count in zip(names, lengths, counts, strict=True):
        # evenly spaced slots with jitter: sorted and non-overlapping by construction
        slot = length // max(count, 1)
        starts = np.arange(count, dtype=np.int64) * slot
        width = rng.integers(widths[0], widths[1], count)
        starts += rng.integers(0, np.maximum(slot - width, 1))
        frames.append(pd.DataFrame({"chr": chrom, "start": starts, "end": starts + width}))
    return pd.concat(frames, ignore_index=True)


def make_workload(folder: Path, **overrides) -> dict:
    """Write the GENERATED timing workload (random, not biological) to ``folder``.

    ``universe.bed`` (500k sorted regions, 400-600 bp), ``vectors.npy`` (random float32
    region vectors, dim 100), ``query.h5ad`` (10k cells x 100k peaks, binary, about 3%
    dense with log-normal peak popularity; 80% of peaks overlap a universe region, a few
    of them two). Only the shapes are realistic. Returns the workload's facts.
    """
    import anndata as ad

    spec = {**WORKLOAD, **overrides}
    rng = np.random.default_rng(spec["seed"])
    folder.mkdir(parents=True, exist_ok=True)
    universe = _sorted_regions(rng, spec["n_universe"], (400, 600))
    universe.to_csv(folder / "universe.bed", sep="\t", header=False, index=False)
    vectors = rng.standard_normal((spec["n_universe"], spec["dim"]), dtype=np.float32)
    np.save(folder / "vectors.npy", vectors)

    n_hit = int(spec["overlap_fraction"] * spec["n_peaks"])
    hit = universe.iloc[np.sort(rng.choice(len(universe), n_hit, replace=False))]
    width = 500
    # start 450 bp before to 350 bp after the region start: every such peak overlaps it
    # (regions are >= 400 bp); a few reach into the next region too
    offset = rng.integers(-450, 350, n_hit)
    hit_peaks = pd.DataFrame(
        {"chr": hit["chr"].to_numpy(), "start": np.maximum(hit["start"].to_numpy() + offset, 0)}
    )
    miss = _sorted_regions(rng, spec["n_peaks"] - n_hit, (width, width + 1))
    miss["start"] += 250_000_000  # beyond the last universe region: overlaps nothing
    peaks = pd.concat([hit_peaks, miss[["chr", "start"]]], ignore_index=True)
    peaks["end"] = peaks["start"] + width
    peaks = peaks.sample(frac=1.0, random_state=spec["seed"]).reset_index(drop=True)

    popularity = rng.lognormal(0.0, 1.0, spec["n_peaks"])
    popularity /= popularity.sum()
    # 2-4% of the peaks per cell (for density 0.03), drawn with replacement by popularity
    per_cell = rng.uniform(2 / 3, 4 / 3, spec["n_cells"]) * spec["density"] * spec["n_peaks"]
    per_cell = per_cell.astype(np.int64)
    rows = np.repeat(np.arange(spec["n_cells"]), per_cell)
    cols = np.searchsorted(np.cumsum(popularity), rng.random(len(rows)), side="right")
    cols = np.minimum(cols, spec["n_peaks"] - 1)
    x = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)),
        shape=(spec["n_cells"], spec["n_peaks"]),
    )
    x = binary_signal(x)
    var = peaks.astype({"start": np.int64, "end": np.int64})
    var.index = var["chr"] + "_" + var["start"].astype(str) + "_" + var["end"].astype(str)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(spec["n_cells"])])
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(folder / "query.h5ad")
    facts = {
        **spec,
        "nnz": int(x.nnz),
        "density_measured": x.nnz / (x.shape[0] * x.shape[1]),
        "generated": True,
    }
    return facts
