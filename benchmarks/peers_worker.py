"""Runs INSIDE the peers environment (``benchmarks/.venv-peers``): SnapATAC2 and geniml.

It imports neither ``scembed_core`` nor anything the main environment has that the peers
environment lacks; it only computes embeddings and timings and writes them to files. All
scoring happens in the main environment (:mod:`benchmarks.peers`) with the same code as
every other method. Each sub-command prints one JSON line.

geniml 0.8.4's ``ScEmbed.encode`` does not run with the gtars it resolves (0.10.0), two
faults (see ``../shared/docs/KNOWN-ISSUES.md``); ``geniml-encode`` shims exactly these
and nothing else:

1. ``geniml.tokenization.utils.Region(chr, start, end)``: gtars 0.10's ``Region`` needs a
   fourth argument ``rest``; the shim passes ``None``.
2. ``[t["input_ids"] for t in sublist]`` in ``encode`` iterates a gtars ``BatchEncoding``,
   which only takes string keys; the shim reads ``enc["input_ids"]`` once per cell. The
   per-cell ``projection`` + ``torch.mean`` loop is geniml's own code, unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from importlib import metadata
from pathlib import Path

import numpy as np

GTARS_SPECIAL_TOKENS = 7


def versions() -> dict:
    """Versions of the peer packages installed here."""
    found = {}
    for name in ("snapatac2", "geniml", "gtars", "torch", "numpy", "scipy", "anndata"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def snapatac(reference: Path, query: Path, out: Path, seeds: list[int]) -> dict:
    """SnapATAC2 spectral embeddings: reference alone, and reference + query jointly."""
    import anndata as ad
    import snapatac2 as snap

    out.mkdir(parents=True, exist_ok=True)
    ref = ad.read_h5ad(reference)
    qry = ad.read_h5ad(query)
    joint = ad.concat([ref, qry], join="inner")
    timings = {}
    for seed in seeds:
        for name, data in (("reference", ref), ("joint", joint)):
            data = data.copy()
            started = time.perf_counter()
            snap.pp.select_features(data, verbose=False)
            snap.tl.spectral(data, random_state=seed, num_threads=2)
            timings[f"{name}_{seed}"] = time.perf_counter() - started
            np.save(out / f"{name}_{seed}.npy", np.asarray(data.obsm["X_spectral"], np.float32))
            n_selected = int(np.asarray(data.var["selected"]).sum())
    return {"seconds": timings, "n_features_selected": n_selected, "n_ref": ref.n_obs}


def geniml_export(universe: Path, vectors: Path, out: Path) -> dict:
    """Write region vectors as a geniml model folder (config.yaml, universe.bed, checkpoint.pt)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    weights = np.load(vectors)
    padded = np.zeros((weights.shape[0] + GTARS_SPECIAL_TOKENS, weights.shape[1]), np.float32)
    padded[: weights.shape[0]] = weights
    torch.save({"projection.weight": torch.from_numpy(padded)}, out / "checkpoint.pt")
    shutil.copy(universe, out / "universe.bed")
    (out / "config.yaml").write_text(
        f"vocab_size: {padded.shape[0]}\nembedding_dim: {weights.shape[1]}\npooling_method: mean\n"
    )
    return {"vocab_size": int(padded.shape[0])}


def _shim_geniml() -> None:
    import geniml.scembed.main as scembed_main
    import geniml.tokenization.utils as token_utils
    import torch
    from gtars.models import Region
    from rich.progress import track

    def region(chrom, start, end):
        return Region(chrom, start, end, None)

    token_utils.Region = region

    def encode(self, regions, pooling=None):
        # geniml 0.8.4 ScEmbed.encode with one line changed (see the module docstring)
        pooling = pooling or self.pooling_method
        tokens = token_utils.tokenize_anndata(regions, self.tokenizer)
        tokens = [enc["input_ids"] for enc in tokens]  # was: [t["input_ids"] for t in sublist]
        embeddings = []
        for token_set in track(tokens, total=len(tokens), description="Getting embeddings"):
            region_embeddings = self._model.projection(torch.tensor(token_set))
            region_embeddings = torch.mean(region_embeddings, axis=0).detach().numpy()
            embeddings.append(region_embeddings)
        return np.vstack(embeddings)

    scembed_main.ScEmbed.encode = encode


def geniml_encode(model: Path, query: Path, out: Path, *, shim: bool) -> dict:
    """``ScEmbed.from_pretrained(model).encode(adata)``, timed by stage."""
    t0 = time.perf_counter()
    import anndata as ad
    import geniml.tokenization.utils as token_utils
    import torch
    from geniml.scembed.main import ScEmbed

    t1 = time.perf_counter()
    if shim:
        _shim_geniml()
    encoder = ScEmbed.from_pretrained(str(model))
    t2 = time.perf_counter()
    adata = ad.read_h5ad(query)
    t3 = time.perf_counter()
    original = token_utils.tokenize_anndata
    spent = {}

    def timed_tokenize(*args, **kwargs):
        started = time.perf_counter()
        result = original(*args, **kwargs)
        spent["tokenize"] = time.perf_counter() - started
        return result

    token_utils.tokenize_anndata = timed_tokenize
    try:
        embedding = encoder.encode(adata)
    except Exception as exc:  # noqa: BLE001 - the failure itself is the result
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "shim": shim}
    t4 = time.perf_counter()
    np.save(out, embedding.astype(np.float32))
    return {
        "ok": True,
        "shim": shim,
        "torch_threads": torch.get_num_threads(),
        "import": t1 - t0,
        "load_model": t2 - t1,
        "read_h5ad": t3 - t2,
        "encode": t4 - t3,
        "tokenize": spent.get("tokenize"),
        "pooling": (t4 - t3) - spent.get("tokenize", 0.0),
        "n_cells": int(embedding.shape[0]),
    }


def main(argv: list[str] | None = None) -> int:
    """Sub-commands: versions, snapatac, geniml-export, geniml-encode."""
    parser = argparse.ArgumentParser(prog="peers_worker.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions")
    sa = sub.add_parser("snapatac")
    sa.add_argument("reference", type=Path)
    sa.add_argument("query", type=Path)
    sa.add_argument("out", type=Path)
    sa.add_argument("--seeds", type=int, nargs="+", default=[0])
    ge = sub.add_parser("geniml-export")
    ge.add_argument("universe", type=Path)
    ge.add_argument("vectors", type=Path)
    ge.add_argument("out", type=Path)
    gn = sub.add_parser("geniml-encode")
    gn.add_argument("model", type=Path)
    gn.add_argument("query", type=Path)
    gn.add_argument("out", type=Path)
    gn.add_argument("--no-shim", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "versions":
        result = versions()
    elif args.command == "snapatac":
        result = snapatac(args.reference, args.query, args.out, args.seeds)
    elif args.command == "geniml-export":
        result = geniml_export(args.universe, args.vectors, args.out)
    else:
        result = geniml_encode(args.model, args.query, args.out, shim=not args.no_shim)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
