"""``make bench-peers``: SnapATAC2 and the predecessor geniml, measured beside scEmbed.

The peers live in their own virtual environment, ``benchmarks/.venv-peers``, which this
command creates (``python -m venv`` + ``pip install``) when it is missing, so their pins
never touch the app's. :mod:`benchmarks.peers_worker` runs inside it and only computes
embeddings and timings; scoring happens here, in the main environment, with the same code as
every other method. The command rewrites the ``bench-peers`` section of BENCHMARKS.md.

- SnapATAC2: spectral embedding of the reference cells (clustering, as paper Fig. 2C) and a
  joint spectral embedding of reference + query cells (label transfer, as Fig. 4G).
- geniml 0.8.4 ``ScEmbed.encode`` vs this engine's map + pool on the generated timing
  workload, in the same run, plus the agreement of their embeddings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scembed_core.regions import binary_signal

from . import report as rp
from .common import (
    LABEL_KEY,
    LSI,
    cluster_three_ways,
    embedding_reference,
    load_granja,
    make_workload,
    run_measured,
    transfer_and_score,
)
from .quality import CLUSTERERS, METRICS, SEEDS, cell_space, plot_confusion
from .speed import measure_map_pool

VENV = rp.BENCH_DIR / ".venv-peers"
WORKER = rp.BENCH_DIR / "peers_worker.py"
#: Installed in this order, each group on its own so one failure does not hide the others.
#: geniml imports scanpy and huggingface_hub without declaring them; they are added here.
PACKAGE_GROUPS = {
    "snapatac2": ["snapatac2==2.9.0"],
    "geniml": ["geniml==0.8.4", "torch==2.13.0", "scanpy==1.11.5", "huggingface_hub==2.4.0"],
}
STAMP = VENV / ".installed.json"


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> dict:
    """Create the peers environment if needed; returns what was installed and what failed."""
    wanted = json.dumps(PACKAGE_GROUPS, sort_keys=True)
    if STAMP.exists() and json.loads(STAMP.read_text()).get("wanted") == wanted:
        state = json.loads(STAMP.read_text())
        state["reused"] = True
        return state
    state: dict = {"wanted": wanted, "groups": {}, "reused": False}
    started = time.perf_counter()
    if not _python().exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(_python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=False
        )
    for group, packages in PACKAGE_GROUPS.items():
        t = time.perf_counter()
        done = subprocess.run(
            [str(_python()), "-m", "pip", "install", "--quiet", *packages],
            capture_output=True,
            text=True,
        )
        errors = [
            line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location")
        ]
        state["groups"][group] = {
            "packages": packages,
            "ok": done.returncode == 0,
            "seconds": time.perf_counter() - t,
            "error": "\n".join(errors[-15:]) if done.returncode else "",
        }
    state["seconds"] = time.perf_counter() - started
    STAMP.write_text(json.dumps(state, indent=1))
    return state


def worker(*args: str, env: dict | None = None, timeout: float = 3600):
    """Run a peers_worker sub-command in the peers environment (measured)."""
    return run_measured([str(_python()), str(WORKER), *args], env=env, timeout=timeout)


def _json(done) -> dict:
    lines = [line for line in done.stdout.strip().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


# --------------------------------------------------------------------------- SnapATAC2


def run_snapatac(tmp: Path, seeds: tuple[int, ...]) -> dict:
    """SnapATAC2 clustering and label transfer, with scEmbed (a) and LSI (c) in the same run."""
    from scembed_core.io import read_dataset
    from scembed_core.project import project
    from scembed_core.reference import DEMO_QUERY_PATH

    from .quality import _load_frozen

    split = load_granja()
    ref, query = split.reference, read_dataset(DEMO_QUERY_PATH)
    truth_ref = ref.obs[LABEL_KEY].astype(str).to_numpy()
    truth_q = query.obs[LABEL_KEY].astype(str).to_numpy()
    for name, data in (("reference", ref), ("query", query)):
        data = data.copy()
        data.obs = data.obs[[LABEL_KEY]]
        data.var = data.var[["chr", "start", "end"]]
        data.obsm.clear()
        data.uns.clear()
        data.write_h5ad(tmp / f"{name}.h5ad")
    done = worker(
        "snapatac",
        str(tmp / "reference.h5ad"),
        str(tmp / "query.h5ad"),
        str(tmp / "snap"),
        "--seeds",
        *map(str, seeds),
    )
    result: dict = {"ok": done.returncode == 0, "seeds": list(seeds)}
    if done.returncode != 0:
        result["error"] = done.stderr[-3000:]
        return result
    info = _json(done)
    result.update(info)
    result["peak_rss"] = done.peak_rss
    result["labels"], result["clustering"] = {"snapatac2": [], "lsi": []}, {"snapatac2": []}
    n_ref = ref.n_obs
    for seed in seeds:
        own = np.load(tmp / "snap" / f"reference_{seed}.npy")
        result["clustering"]["snapatac2"].append(cluster_three_ways(own, truth_ref, seed=seed))
        joint = np.load(tmp / "snap" / f"joint_{seed}.npy")
        scores = transfer_and_score(
            joint[n_ref:], embedding_reference(joint[:n_ref], truth_ref), truth_q
        )
        result["confusion_snapatac2"] = result.get("confusion_snapatac2", scores["confusion"])
        result["labels"]["snapatac2"].append({k: v for k, v in scores.items() if k != "confusion"})
        lsi = LSI(30, seed=seed).fit(binary_signal(ref.X))
        scores = transfer_and_score(
            lsi.transform(binary_signal(query.X)),
            embedding_reference(lsi.transform(binary_signal(ref.X)), truth_ref),
            truth_q,
        )
        result["labels"]["lsi"].append({k: v for k, v in scores.items() if k != "confusion"})
    frozen = _load_frozen()
    proj = project(query, frozen, ev=False)
    scores = transfer_and_score(proj.embedding, frozen, truth_q)
    result["labels"]["frozen"] = [{k: v for k, v in scores.items() if k != "confusion"}]
    labels = frozen.cells.obs[LABEL_KEY].astype(str).to_numpy()
    result["clustering"]["frozen"] = [cluster_three_ways(cell_space(frozen), labels, seed=0)]
    return result


# --------------------------------------------------------------------------- geniml


def _count_weighted(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Set-semantics mean (this engine) and count-weighted mean (geniml) on the workload."""
    import anndata as ad
    import scipy.sparse as sp

    from scembed_core.project import regions_of
    from scembed_core.regions import GenomicRegions, map_peaks_to_universe

    adata = ad.read_h5ad(folder / "query.h5ad")
    universe = GenomicRegions.read_bed(folder / "universe.bed")
    vectors = np.load(folder / "vectors.npy")
    mapping = map_peaks_to_universe(regions_of(adata), universe)
    counts = sp.csr_matrix(adata.X @ mapping.matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = (counts @ vectors) / np.asarray(counts.sum(axis=1))
    return weighted.astype(np.float32), np.diff(counts.indptr) > 0


def run_geniml(tmp: Path) -> dict:
    """geniml encode (as shipped, shimmed with 2 and 1 torch threads) vs map + pool, same run."""
    folder = tmp / "workload"
    result: dict = {"workload": make_workload(folder)}
    print("peers: workload generated", flush=True)
    result["ours"] = measure_map_pool(folder, save=tmp / "ours.npy")
    print("peers: scEmbed map+pool measured", flush=True)
    done = worker(
        "geniml-export", str(folder / "universe.bed"), str(folder / "vectors.npy"), str(tmp / "m")
    )
    if done.returncode != 0:
        result["error"] = "export failed: " + done.stderr[-2000:]
        return result
    args = ("geniml-encode", str(tmp / "m"), str(folder / "query.h5ad"))
    done = worker(*args, str(tmp / "as_shipped.npy"), "--no-shim")
    result["as_shipped"] = _json(done) or {"ok": False, "error": done.stderr[-1500:]}
    runs = {"shim_default_threads": {}, "shim_one_thread": {"OMP_NUM_THREADS": "1"}}
    weighted, has_tokens = _count_weighted(folder)
    ours = np.load(tmp / "ours.npy")
    for name, env in runs.items():
        out = tmp / f"{name}.npy"
        done = worker(*args, str(out), env=env)
        info = _json(done) or {"ok": False, "error": done.stderr[-1500:]}
        info.update({"wall": done.wall, "peak_rss": done.peak_rss})
        if info.get("ok"):
            theirs = np.load(out)
            rows = has_tokens & np.isfinite(theirs).all(axis=1) & np.isfinite(ours).all(axis=1)
            info["max_abs_diff_count_weighted"] = float(np.abs(theirs[rows] - weighted[rows]).max())
            info["max_abs_diff_set_mean"] = float(np.abs(theirs[rows] - ours[rows]).max())
            info["cells_compared"] = int(rows.sum())
        result[name] = info
        print(f"peers: geniml {name} measured", flush=True)
    return result


# --------------------------------------------------------------------------- report


def section(results: dict) -> str:
    """Markdown for the ``bench-peers`` section; writes the SnapATAC2 confusion figure."""
    from .quality import LABEL_METHODS, clustering_rows, label_rows

    out = ["## `make bench-peers`: SnapATAC2 and geniml", rp.command("make bench-peers")]
    out.append(f"This run took **{results['seconds'] / 60:.1f} min**. Machine:")
    peer_versions = {f"{k} (peers env)": v for k, v in (results.get("peer_versions") or {}).items()}
    out.append(rp.facts_block(results["facts"], extra_versions=peer_versions))
    install = results["install"]
    lines = []
    for _group, info in install.get("groups", {}).items():
        status = "installed" if info["ok"] else "**failed**"
        lines.append(f"- `pip install {' '.join(info['packages'])}`: {status}.")
        if info.get("error"):
            lines.append("  ```\n  " + info["error"].replace("\n", "\n  ") + "\n  ```")
    out.append(
        "The peers run in `benchmarks/.venv-peers`, "
        + (
            "reused from an earlier run of this command"
            if install.get("reused")
            else "created by this run"
        )
        + " (`python -m venv`, then one `pip install` per group; torch 2.13.0 CPU comes from "
        "the machine's local wheel folder). geniml imports scanpy and huggingface_hub without "
        "declaring them, so they are installed explicitly.\n\n" + "\n".join(lines)
    )

    snap = results.get("snapatac")
    out.append("### SnapATAC2: label transfer and clustering on the Granja data")
    if not snap or not snap.get("ok"):
        out.append(
            "SnapATAC2 could not be run: "
            + (snap or {}).get("error", "not installed")[-1500:].replace("\n", " ")
        )
    else:
        seeds = snap["seeds"]
        out.append(
            "(d) SnapATAC2 `pp.select_features` (defaults; "
            f"{snap['n_features_selected']:,} of 10,000 peaks kept) + `tl.spectral` "
            f"(30 components, cosine, seeds {', '.join(map(str, seeds))}) on the reference and "
            "held-out query cells **together** (a joint embedding: the query cells, without "
            "their labels, shape the embedding, which scEmbed's frozen reference and LSI's "
            "fit do not allow); then the same kNN rule as every method (k = 15, cosine, "
            "majority vote over the reference cells). (a) and (c) are recomputed in this run "
            "for a same-run comparison; (b) is in the `make bench` section."
        )
        out.append(rp.command("make bench-peers"))
        names = {k: LABEL_METHODS[k] for k in ("frozen", "lsi", "snapatac2")}
        out.append(
            rp.table(
                label_rows(snap["labels"], names),
                ["method", "accuracy", "macro-F1", "weighted-F1", "seeds"],
                "lrrrr",
            )
        )
        path = rp.FIGURES / "confusion_snapatac2.png"
        rp.FIGURES.mkdir(parents=True, exist_ok=True)
        plot_confusion(
            snap["confusion_snapatac2"],
            f"Label transfer (d) SnapATAC2 joint, seed {seeds[0]}",
            path,
        )
        out.append(rp.figure(path, "confusion matrix SnapATAC2"))
        out.append(
            "Clustering the 8,785 reference cells (paper Fig. 2C layout; SnapATAC2 spectral "
            "embedding of the reference cells alone; same three clusterings as in `make bench`):"
        )
        from .quality import CLUSTER_NAMES

        out.append(
            rp.table(
                clustering_rows(
                    snap["clustering"], {k: CLUSTER_NAMES[k] for k in ("frozen", "snapatac2")}
                ),
                ["embedding", "clustering", "ARI", "AMI", "homogeneity", "seeds"],
                "llrrrr",
            )
        )
        out.append(_snap_reading(snap))

    gm = results.get("geniml")
    out.append("### geniml 0.8.4 (the predecessor) vs this engine: projection speed")
    if not gm or "ours" not in gm:
        out.append("geniml could not be run: " + str((gm or {}).get("error", "not installed")))
        return "\n\n".join(out)
    wl, ours = gm["workload"], gm["ours"]
    three_calls = float(np.median([r["total"] for r in ours["runs"]]))
    fused = ours.get("fused_runs") or []
    ours_steps = float(np.median([r["total"] for r in fused])) if fused else three_calls
    out.append(
        f"The same **GENERATED** workload as `make bench` (random, timing only: "
        f"{wl['n_cells']:,} cells × {wl['n_peaks']:,} peaks, {wl['nnz']:,} non-zeros, "
        f"{wl['n_universe']:,}-region universe, dim {wl['dim']}), written as a geniml model "
        "folder (`config.yaml`, `universe.bed`, `checkpoint.pt` with the same vectors plus "
        "gtars' 7 special-token rows). geniml runs "
        "`ScEmbed.from_pretrained(folder).encode(adata)` in the peers environment; the "
        "engine's map + pool runs in the main one, both as child processes of this same run "
        "(peak RSS from `wait4`)."
    )
    shipped = gm.get("as_shipped", {})
    out.append(
        "**As shipped, geniml 0.8.4 fails** with gtars "
        f"{results.get('peer_versions', {}).get('gtars', '?')}: `{shipped.get('error', '?')}`. "
        "The rows below use two shims (geniml's `Region(chr, start, end)` call given gtars' "
        'new fourth argument `rest=None`; `encode` reading `enc["input_ids"]` instead of '
        "iterating the `BatchEncoding`), nothing else: tokenisation and the per-cell torch "
        "pooling loop are geniml's own code."
    )
    out.append(rp.command("make bench-peers"))
    rows = []
    if fused:
        rows.append(
            [
                "this engine, `project()` path (`compute_coverage` + `embed_cells`), median of 3",
                rp.seconds(ours_steps),
                "–",
                "–",
                "(see note)",
                rp.gib(ours["process_peak_rss"]),
                "1×",
            ]
        )
    rows.append(
        [
            "this engine, three calls (map + `cells_by_universe` + `pool_region_vectors`), "
            "median of 3",
            rp.seconds(three_calls),
            "–",
            "–",
            "(see note)",
            rp.gib(ours["process_peak_rss"]),
            rp.ratio(three_calls, ours_steps),
        ]
    )
    for key, label in (
        ("shim_default_threads", "geniml encode, shimmed, torch default threads"),
        ("shim_one_thread", "geniml encode, shimmed, `OMP_NUM_THREADS=1`"),
    ):
        info = gm.get(key, {})
        if not info.get("ok"):
            rows.append([label, "failed: " + str(info.get("error", ""))[:200], "", "", "", "", ""])
            continue
        rows.append(
            [
                f"{label} ({info['torch_threads']} threads)",
                rp.seconds(info["encode"]),
                rp.seconds(info["tokenize"]),
                rp.seconds(info["pooling"]),
                rp.seconds(info["wall"]),
                rp.gib(info["peak_rss"]),
                rp.ratio(info["encode"], ours_steps),
            ]
        )
    out.append(
        rp.table(
            rows,
            [
                "what",
                "projection",
                "of which tokenize",
                "of which pooling",
                "whole process",
                "peak RSS",
                "vs fastest",
            ],
            "lrrrrrr",
        )
    )
    agree = gm.get("shim_one_thread") or gm.get("shim_default_threads") or {}
    if agree.get("ok"):
        out.append(
            f"Agreement on {agree['cells_compared']:,} cells: geniml's embeddings equal a "
            "count-weighted mean (a region hit by two peaks of a cell counts twice) to max "
            f"|diff| = {agree['max_abs_diff_count_weighted']:.1e}; this engine deliberately "
            "takes each region once (set mean), which differs from geniml by up to "
            f"{agree['max_abs_diff_set_mean']:.1e} on these random vectors. "
            "'Projection' is `encode` for geniml (tokenise + pool) and mapping + pooling for "
            "ours; 'whole process' adds interpreter start, imports and reading the inputs. The "
            "engine's child process runs both formulations three times plus two traced passes "
            f"(whole process {rp.seconds(ours['process_wall'])}, one peak RSS for all of it), "
            "so only its per-run projection times compare with geniml's single `encode`."
        )
    return "\n\n".join(out)


def _snap_reading(snap: dict) -> str:
    labels = snap["labels"]
    names = {"frozen": "scEmbed (a)", "lsi": "LSI (c)", "snapatac2": "SnapATAC2 (d)"}

    def mean_of(key: str, metric: str) -> float:
        return float(np.mean([r[metric] for r in labels[key]]))

    text = [
        "**Reading.** Label transfer, macro-F1 / accuracy: "
        + "; ".join(
            f"{names[k]} {mean_of(k, 'macro_f1'):.3f} / {mean_of(k, 'accuracy'):.3f}"
            for k in labels
            if labels[k]
        )
        + "."
    ]
    sds = [np.std([r["accuracy"] for r in labels["snapatac2"]])]
    if len(labels["snapatac2"]) > 1 and max(sds) == 0:
        text.append(
            "SnapATAC2's rows are identical across seeds: without subsampling its spectral "
            "embedding does not depend on the random seed."
        )
    d_f1 = mean_of("frozen", "macro_f1") - mean_of("snapatac2", "macro_f1")
    d_acc = mean_of("frozen", "accuracy") - mean_of("snapatac2", "accuracy")
    if d_f1 > 0 and d_acc > 0:
        text.append(
            f"scEmbed's built-in reference transfers labels better than SnapATAC2's joint "
            f"embedding (macro-F1 {d_f1:+.3f}, accuracy {d_acc:+.3f}), although SnapATAC2 saw "
            "the query cells when it built its embedding."
        )
    else:
        text.append(
            f"SnapATAC2 transfers labels at least as well as scEmbed here (scEmbed minus "
            f"SnapATAC2: macro-F1 {d_f1:+.3f}, accuracy {d_acc:+.3f}); its embedding was "
            "computed with the query cells in it (transductive), which a frozen reference "
            "cannot do."
        )
    clustering = snap["clustering"]
    scores = {
        k: {m: float(np.mean([np.mean([r[c][m] for c in CLUSTERERS]) for r in v])) for m in METRICS}
        for k, v in clustering.items()
    }
    text.append(
        "Clustering, mean over the three methods (ARI / AMI / homogeneity): "
        + "; ".join(
            f"{names[k]} {v['ari']:.3f} / {v['ami']:.3f} / {v['homogeneity']:.3f}"
            for k, v in scores.items()
        )
        + "."
    )
    if all(scores["snapatac2"][m] > scores["frozen"][m] for m in METRICS):
        text.append(
            "**scEmbed loses to SnapATAC2 on clustering** of the reference cells on every "
            "score. The most likely explanation: SnapATAC2's spectral embedding is built from "
            f"cell-to-cell similarity over all {snap['n_features_selected']:,} selected peaks at once, while an scEmbed "
            "cell is the average of the vectors of its ~170 accessible regions, vectors "
            "learned from co-accessibility within only 8,785 cells of a 10,000-peak random "
            "panel, so each vector carries noise that the average only partly cancels. "
            "scEmbed's strength is the frozen, transferable reference (label transfer above, "
            "projection speed below), not clustering one dataset from scratch."
        )
    return " ".join(text)


def main() -> int:
    """Install the peers if needed, measure them, rewrite the bench-peers section."""
    started = time.perf_counter()
    results: dict = {"facts": rp.machine_facts()}
    results["install"] = ensure_venv()
    print("peers: environment ready", flush=True)
    if _python().exists():
        results["peer_versions"] = _json(worker("versions"))
    with tempfile.TemporaryDirectory(prefix="scembed-peers-") as tmp:
        tmp = Path(tmp)
        if results["install"]["groups"].get("snapatac2", {}).get("ok"):
            results["snapatac"] = run_snapatac(tmp, SEEDS)
            print("peers: SnapATAC2 done", flush=True)
        else:
            results["snapatac"] = {"ok": False, "error": "pip install snapatac2 failed"}
        if results["install"]["groups"].get("geniml", {}).get("ok"):
            results["geniml"] = run_geniml(tmp)
        else:
            results["geniml"] = {"error": "pip install geniml failed (see above)"}
    results["seconds"] = time.perf_counter() - started
    rp.replace_section("bench-peers", section(results))
    saved = {k: v for k, v in results.items() if k != "snapatac"}
    snap = dict(results.get("snapatac") or {})
    confusion = snap.pop("confusion_snapatac2", None)
    saved["snapatac"] = snap
    if confusion is not None:
        saved["confusion_snapatac2"] = confusion.to_dict()
    rp.save_results("peers", saved)
    print(f"wrote the bench-peers section of {rp.REPORT} in {results['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
