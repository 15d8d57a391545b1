"""The command line's argument parser and its terminal progress bar (used by :mod:`.cli`)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["ProgressBar", "build_parser"]


class ProgressBar:
    """A :data:`~scembed_core._types.ProgressCallback` drawing a tqdm bar on stderr."""

    def __init__(self, description: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=description, file=sys.stderr, leave=False)
        self._done = 0

    def __call__(self, fraction: float, message: str) -> None:
        target = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        self._bar.set_postfix_str(message[:50])
        if target > self._done:
            self._bar.update(target - self._done)
            self._done = target

    def close(self) -> None:
        self._bar.close()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m scembed_core`` (every subcommand and option).

    Returns
    -------
    argparse.ArgumentParser
        The parser; :func:`scembed_core.cli.main` runs the chosen subcommand.
    """
    parser = argparse.ArgumentParser(
        prog="python -m scembed_core",
        description="scEmbed: region embeddings for scATAC-seq, projection and annotation.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a reference bundle from a labelled dataset")
    train.add_argument("input", help="dataset: .h5ad, 10x h5/folder, csv, archive")
    train.add_argument(
        "--labels-key", action="append", default=None, help="obs label column (repeatable)"
    )
    train.add_argument("--out", required=True, help="output bundle folder")
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--window", type=int, default=5)
    train.add_argument("--dim", type=int, default=100)
    train.add_argument("--min-count", type=int, default=5)
    train.add_argument(
        "--workers",
        type=int,
        default=2,
        help="gensim threads (default 2); only --workers 1 is reproducible for a given --seed",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--genome", default="unknown")
    train.add_argument("--name", default=None)

    project = sub.add_parser(
        "project",
        help="project a dataset onto a reference and annotate it",
        description="Project a dataset onto a reference and annotate it. With --params "
        "run.json (from the app's Export page) every parameter and the reference come from "
        "the file; options given explicitly on the command line win over the file.",
    )
    project.add_argument("input")
    project.add_argument(
        "--params",
        default=None,
        metavar="RUN_JSON",
        help="take the reference and every parameter from a run.json (the app's Export "
        "page); options given on the command line override it",
    )
    project.add_argument(
        "--reference", default="default", help="'default', a folder, or hf:OWNER/NAME[@REV]"
    )
    project.add_argument(
        "--out", default=None, help="output .h5ad (with --params: <input stem>_scembed.h5ad)"
    )
    project.add_argument(
        "--trust",
        action="store_true",
        help="allow a geniml folder's gensim model.bin (a pickle); scEmbed bundles need none",
    )
    project.add_argument("--layer", default=None, help="h5ad layer holding the counts")
    project.add_argument(
        "--query-genome",
        choices=["auto", "hg19", "hg38"],
        default="auto",
        help="genome build of the input (default: detect it); peaks on another build than "
        "the reference's are lifted over",
    )
    project.add_argument(
        "--no-liftover",
        action="store_true",
        help="refuse, instead of lifting, when the input is on another build",
    )
    project.add_argument("--strict", action="store_true", help="fail when it does not fit")
    group = project.add_mutually_exclusive_group()
    group.add_argument("--resolution", type=float, default=None)
    group.add_argument("--n-clusters", type=int, default=None)
    project.add_argument("--method", choices=["louvain", "leiden"], default="louvain")
    project.add_argument(
        "--k-neighbors", type=int, default=15, help="reference neighbours for labels (15)"
    )
    project.add_argument(
        "--n-neighbors", type=int, default=15, help="neighbours of the clustering kNN graph (15)"
    )
    project.add_argument("--min-confidence", type=float, default=0.0)
    project.add_argument("--max-mapping-distance", type=float, default=None)
    project.add_argument(
        "--unknown-rate",
        type=float,
        default=None,
        help="strictness of the Unknown rule: share of known cells it may call Unknown "
        "(0: off; default: the reference's calibrated rate)",
    )
    project.add_argument("--label-key", default=None, help="reference label column to transfer")
    project.add_argument(
        "--label-method",
        choices=["classifier", "knn"],
        default="classifier",
        help="the reference's calibrated label classifier (default; older bundles fall back "
        "to the kNN vote with a note) or the 15-nearest-neighbour vote",
    )
    project.add_argument("--truth-key", default=None, help="query obs column to evaluate against")
    project.add_argument("--no-ev", action="store_true", help="skip EV-projection (UMAP)")
    project.add_argument("--csv", action="store_true", help="also write a per-cell CSV")
    project.add_argument("--seed", type=int, default=0)
    project.add_argument("--gene-activity", metavar="OUT", help="also write gene activity (h5ad)")
    project.add_argument("--markers", metavar="OUT", help="also write marker regions (csv)")
    project.add_argument(
        "--dask",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="out of core with Dask (a local cluster, or the scheduler at ADDRESS); "
        "writes a .zarr store, as does any --out ending in .zarr",
    )
    project.add_argument("--chunk-size", type=int, default=50_000, help="cells per Dask task")

    info = sub.add_parser("info", help="describe a reference")
    info.add_argument("reference", help="'default', a folder, or hf:OWNER/NAME[@REV]")
    info.add_argument(
        "--trust", action="store_true", help="allow a geniml folder's gensim model.bin (a pickle)"
    )

    push = sub.add_parser("push", help="upload a bundle to the Hugging Face hub")
    push.add_argument("folder")
    push.add_argument("repo_id", help="OWNER/NAME")
    push.add_argument("--private", action="store_true")
    return parser
