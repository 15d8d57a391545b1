"""Command line: ``python -m scembed_core {train,project,info,push}``.

Errors of the engine print as one line (``error: ...``) with exit status 2; progress goes
to stderr as a terminal bar.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._cli_parser import ProgressBar, build_parser
from .errors import ScEmbedError
from .fit import FitRejected

if TYPE_CHECKING:
    from .reference import Reference

__all__ = ["main"]


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
    bar = ProgressBar("train")
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
    parser = build_parser()
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
        "unknown_rate",
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
    if "truth_key" not in given and spec.scoring.get("truth_key"):  # scored as the app did
        args.truth_key, args.label_map = spec.scoring["truth_key"], spec.scoring["label_map"]
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


def _check_run_reference(args: argparse.Namespace, reference: Reference) -> None:
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
    if Path(args.out).is_dir() or not -float("inf") < (args.resolution or 0.0) < float("inf"):
        raise ParameterError("--out must name a file (OUT.h5ad), --resolution a finite number.")
    from .io import read_dataset
    from .liftover.query import chain_for_fragments
    from .pipeline import run_pipeline, write_evidence, write_results
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
    bar = ProgressBar("project")
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
            unknown_rate=args.unknown_rate,
            label_key=args.label_key,
            label_method=args.label_method,
            truth_key=args.truth_key,
            label_map=getattr(args, "label_map", None),
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
    written = write_evidence(result.adata, reference, args.gene_activity, args.markers)
    written = write_results(result, args.out, csv=args.csv) + written
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
    """Refuse data on another build than the reference's: the Dask path lifts no peaks."""
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
    bar = ProgressBar("project")
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
            unknown_rate=args.unknown_rate,
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
    args = build_parser().parse_args(argv)
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
