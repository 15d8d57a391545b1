"""Command line: ``python -m scembed_core {train,project,info,push}``.

Errors of the engine print as one line (``error: ...``) with exit status 2; progress goes
to stderr as a terminal bar.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .errors import ScEmbedError
from .fit import FitRejected

__all__ = ["main"]


class _Bar:
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


def _parser() -> argparse.ArgumentParser:
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


def _cmd_train(args: argparse.Namespace) -> int:
    from .io import read_dataset
    from .liftover.query import check_genome
    from .project import regions_of
    from .reference import save_reference
    from .train import TrainingParams, train_reference

    adata = read_dataset(args.input)
    detection = check_genome(regions_of(adata), args.genome)
    if args.genome == "unknown" and detection.confident:
        print(
            f"note: the peaks look like {detection.build} ({detection.confidence:.1%}); pass "
            f"--genome {detection.build} to record it in the bundle",
            file=sys.stderr,
        )
    params = TrainingParams(
        epochs=args.epochs,
        window=args.window,
        vector_size=args.dim,
        min_count=args.min_count,
        workers=args.workers,
        seed=args.seed,
    )
    bar = _Bar("train")
    try:
        reference = train_reference(
            adata,
            label_key=args.labels_key,
            params=params,
            genome=args.genome,
            name=args.name or Path(args.out).name,
            source=str(args.input),
            progress=bar,
        )
    finally:
        bar.close()
    reference = save_reference(reference, args.out)
    stats = reference.manifest["training_stats"]
    print(
        f"wrote {args.out}: {reference.n_cells} cells, {reference.n_regions} regions, "
        f"{stats['seconds']:.1f} s training ({stats['words_per_second']:,.0f} words/s)"
    )
    return 0


def _explicit_options(argv: list[str]) -> set[str]:
    """Destinations of the options given on the command line (not left at a default)."""
    parser = _parser()
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    found, _ = parser.parse_known_args(argv)
    return set(vars(found))


def _apply_run_spec(args: argparse.Namespace, argv: list[str]) -> None:
    """Fill ``args`` from ``--params run.json``; options given explicitly win."""
    from . import __version__
    from .runspec import cli_reference, file_sha256, read_run_spec

    spec = read_run_spec(args.params)
    given = _explicit_options(argv)
    params = spec.params
    for name in (
        "resolution",
        "n_clusters",
        "method",
        "k_neighbors",
        "n_neighbors",
        "min_confidence",
        "max_mapping_distance",
        "label_key",
        "label_method",
        "seed",
        "query_genome",
        "layer",
    ):
        if name not in given:
            setattr(args, name, params[name])
    if "resolution" in given:
        args.n_clusters = None
    elif "n_clusters" in given:
        args.resolution = None
    if "no_ev" not in given:
        args.no_ev = not params["ev"]
    if "no_liftover" not in given:
        args.no_liftover = not params["liftover"]
    if "reference" not in given:
        args.reference = cli_reference(spec)
    if args.out is None:
        args.out = f"{Path(args.input).stem}_scembed.h5ad"
    args.run_spec = spec
    if spec.scembed_version and spec.scembed_version != __version__:
        print(
            f"note: {args.params} was written by scEmbed {spec.scembed_version}; this is "
            f"{__version__}, results may differ",
            file=sys.stderr,
        )
    expected = spec.input.get("sha256")
    if expected and Path(args.input).is_file() and file_sha256(args.input) != expected:
        print(
            f"warning: {args.input} is not the input {args.params} was made from (its sha256 "
            f"differs from {expected[:12]}...); the results will differ",
            file=sys.stderr,
        )


def _check_run_reference(args: argparse.Namespace, reference) -> None:
    spec = getattr(args, "run_spec", None)
    expected = spec.reference.get("fingerprint") if spec is not None else None
    if expected and reference.fingerprint != expected:
        print(
            f"warning: the reference {args.reference!r} is not the one {args.params} was made "
            f"with (fingerprint {reference.fingerprint[:12]}... instead of {expected[:12]}...); "
            "the results will differ",
            file=sys.stderr,
        )


def _cmd_project(args: argparse.Namespace) -> int:
    from .errors import ParameterError

    if args.out is None:
        raise ParameterError("project needs --out OUT.h5ad (or --params run.json).")
    if args.dask is not None or str(args.out).endswith(".zarr"):
        return _cmd_project_scale(args)
    if Path(args.out).is_dir():
        raise ParameterError(f"--out {args.out} is a folder; give a file name (OUT.h5ad).")
    if args.resolution is not None and not math.isfinite(args.resolution):
        raise ParameterError(f"--resolution must be a finite number, got {args.resolution}.")
    from .io import read_dataset
    from .liftover.query import chain_for_fragments
    from .pipeline import run_pipeline, write_results
    from .qc import drop_recorded_cells
    from .reference import resolve_reference

    started = time.perf_counter()
    reference = resolve_reference(args.reference, trust=args.trust)
    _check_run_reference(args, reference)
    chain = chain_for_fragments(
        args.input, reference, query_genome=args.query_genome, liftover=not args.no_liftover
    )
    adata = read_dataset(
        args.input, layer=args.layer, universe=reference.model.universe, liftover=chain
    )
    adata = drop_recorded_cells(adata, getattr(getattr(args, "run_spec", None), "qc", None))
    bar = _Bar("project")
    try:
        result = run_pipeline(
            adata,
            reference,
            ev=not args.no_ev,
            resolution=args.resolution,
            n_clusters=args.n_clusters,
            method=args.method,
            k_neighbors=args.k_neighbors,
            n_neighbors=args.n_neighbors,
            min_confidence=args.min_confidence,
            max_mapping_distance=args.max_mapping_distance,
            label_key=args.label_key,
            label_method=args.label_method,
            truth_key=args.truth_key,
            random_state=args.seed,
            progress=bar,
            query_genome=args.query_genome,
            liftover=not args.no_liftover,
        )
    finally:
        bar.close()
    fit = result.fit or {}
    print(f"fit: {fit.get('verdict')} (cause: {fit.get('cause')}). {fit.get('reason')}")
    if args.strict and fit.get("verdict") == "does_not_fit":
        raise FitRejected(f"--strict: the dataset does not fit the reference. {fit['reason']}")
    written = write_results(result, args.out, csv=args.csv)
    if result.liftover:
        lift = result.liftover
        dropped = ", ".join(f"{n:,} {r}" for r, n in lift["dropped"].items()) or "none"
        print(
            f"lifted {lift['n_lifted']:,} of {lift['n_peaks']:,} peaks from "
            f"{lift['source_build']} to {lift['target_build']} ({lift['chain']}); dropped: "
            f"{dropped}"
            + (
                f"; overlap with the universe {lift['overlap_before']:.1%} -> "
                f"{lift['overlap_after']:.1%}"
                if "overlap_before" in lift
                else ""
            )
        )
    if result.params.get("label_note"):
        print(f"note: {result.params['label_note']}", file=sys.stderr)
    table = result.cluster_table
    if table is not None and "unknown" in table:
        odd = table["possibly_absent"] | table["unknown"]
        flagged = ", ".join(map(str, table.loc[odd, "cluster"]))
        if flagged:
            print(f"warning: cluster(s) {flagged}: a type the reference lacks?", file=sys.stderr)
    coverage = result.coverage
    print(
        f"projected {adata.n_obs} cells in {time.perf_counter() - started:.1f} s; "
        f"{coverage['fraction_peaks_mapped']:.1%} of peaks hit the universe; "
        f"{result.n_clusters} clusters (resolution {result.resolution:.3g})"
    )
    for warning in coverage["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if result.evaluation:
        print("evaluation:", json.dumps(result.evaluation, indent=1, default=float))
    print("wrote", ", ".join(str(p) for p in written))
    return 0


def _check_scale_build(args: argparse.Namespace) -> None:
    """The out-of-core path does not lift peaks: refuse data on another build than the
    reference's (detected from an ``.h5ad``'s peak table, or as given)."""
    from .errors import GenomeBuildError
    from .liftover.query import decide_lift
    from .reference import resolve_reference

    path = Path(args.input)
    if args.query_genome == "auto" and path.suffix != ".h5ad":
        return
    import anndata as ad

    from .project import regions_of

    reference = resolve_reference(args.reference, trust=args.trust)
    if path.suffix == ".h5ad" and path.is_file():
        peaks = regions_of(ad.read_h5ad(path, backed="r"))
    else:
        from .regions import GenomicRegions

        peaks = GenomicRegions(["chr1"], [0], [1])  # no evidence: the given build decides
    build, _, lift_from = decide_lift(peaks, reference, query_genome=args.query_genome)
    if lift_from is not None:
        raise GenomeBuildError(
            f"The query is on {build} but the reference is on {reference.genome}, and the "
            "out-of-core path (--dask / .zarr output) does not lift peaks over: project "
            "without --dask (which lifts them), or lift the data first."
        )


def _cmd_project_scale(args: argparse.Namespace) -> int:
    from .atlas import cluster_large, project_out_of_core
    from .errors import ParameterError

    if args.truth_key or args.csv:
        raise ParameterError("--truth-key and --csv are not available with --dask / .zarr output.")
    _check_scale_build(args)
    started = time.perf_counter()
    bar = _Bar("project")
    try:
        summary = project_out_of_core(
            args.input,
            args.reference,
            args.out,
            chunk_size=args.chunk_size,
            scheduler=None if args.dask in (None, "local") else args.dask,
            k_neighbors=args.k_neighbors,
            min_confidence=args.min_confidence,
            max_mapping_distance=args.max_mapping_distance,
            label_key=args.label_key,
            label_method=args.label_method,
            ev=not args.no_ev,
            layer=args.layer,
            progress=bar,
            trust=args.trust,
        )
        clusters = cluster_large(
            args.out,
            resolution=1.0 if args.resolution is None else args.resolution,
            n_clusters=args.n_clusters,
            method=args.method,
            random_state=args.seed,
        )
    finally:
        bar.close()
    memory = summary["max_worker_peak_rss_bytes"]
    print(
        f"projected {summary['n_cells']:,} cells in {time.perf_counter() - started:.1f} s "
        f"({summary['n_chunks_computed']} chunk(s) computed, {summary['n_chunks_skipped']} "
        f"already done"
        + (f"; {summary['cells_per_second']:,.0f} cells/s" if memory else "")
        + (f"; peak worker memory {memory / 2**30:.2f} GiB" if memory else "")
        + f"); {len(set(clusters[clusters >= 0].tolist()))} clusters"
    )
    for warning in summary["coverage"]["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print("wrote", args.out)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .reference import resolve_reference

    reference = resolve_reference(args.reference, trust=args.trust)
    manifest = reference.manifest
    print(f"name:       {reference.name}")
    print(f"genome:     {reference.genome}")
    print(f"regions:    {reference.n_regions:,} (dim {reference.model.dim})")
    print(f"cells:      {reference.n_cells:,}")
    print(f"EV-project: {'yes' if reference.can_ev_project else 'no'}")
    for note in reference.notes:
        print(f"note:       {note}")
    if manifest.get("source"):
        print(f"source:     {manifest['source']}")
    model = getattr(reference, "label_model", None)
    if model is not None:
        calibration = model.calibration or {}
        print(
            f"classifier: {model.label_key}, {len(model.classes)} classes, "
            f"{model.params.space} space, C={model.params.C:g}; hold-out accuracy "
            f"{calibration.get('accuracy', float('nan')):.3f}, ECE "
            f"{calibration.get('ece', float('nan')):.3f}"
        )
    elif reference.can_transfer_labels:
        print("classifier: none (labels by kNN vote)")
    for key in reference.label_keys:
        print(f"labels[{key}]:")
        for label, count in reference.label_counts(key).items():
            print(f"  {label:<24} {count:>7,}")
    if manifest.get("training"):
        print("training:   " + ", ".join(f"{k}={v}" for k, v in manifest["training"].items()))
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_bundle

    url = push_bundle(Path(args.folder), args.repo_id, private=args.private)
    print(f"pushed {args.folder} to {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    commands = {"train": _cmd_train, "project": _cmd_project, "info": _cmd_info, "push": _cmd_push}
    try:
        if args.command == "project" and args.params is not None:
            _apply_run_spec(args, argv)
        return commands[args.command](args)
    except ScEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
