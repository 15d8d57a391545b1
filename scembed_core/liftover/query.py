"""Bring a query dataset onto its reference's genome build before overlap mapping.

:func:`prepare_query` is the one seam the command line, the pipeline and the app share: it
decides the query's build (given, or detected), lifts the peak table (``var``
``chr``/``start``/``end``) onto the reference's build when they differ, and returns the
record that ends up in ``uns["scembed"]["liftover"]``.

A lifted dataset keeps its cells and the signal of every lifted peak. Dropped peaks are
removed from the matrix (the counts per reason are recorded). Peaks that land on the same
interval stay separate columns: overlap mapping handles duplicates, and pooling counts a
universe region once per cell whatever the number of peaks that hit it. ``var_names`` stay
the query's own names; ``var`` gains ``<source>_chr``/``_start``/``_end`` with the original
coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np

from .._types import QueryGenome
from ..errors import GenomeBuildError, ParameterError
from ..regions import GenomicRegions, map_peaks_to_universe
from .builds import BuildDetection, chain_between, detect_build, normalize_build
from .lift import LiftResult, lift_regions

if TYPE_CHECKING:
    import anndata as ad

    from ..reference import Reference
    from .chain import Chain

__all__ = [
    "QUERY_GENOME_CHOICES",
    "PreparedQuery",
    "check_genome",
    "chain_for_fragments",
    "decide_lift",
    "lift_dataset",
    "prepare_query",
]

QUERY_GENOME_CHOICES: tuple[str, ...] = get_args(QueryGenome)


@dataclass(frozen=True)
class PreparedQuery:
    """A query on its reference's build, with what was detected and done.

    Attributes
    ----------
    adata
        The dataset to project (the input itself when nothing was lifted).
    query_build
        The build the query was taken to be on (``unknown`` when undecided).
    detection
        The build detection (None when the build was given and not detected).
    liftover
        Plain-data record of the liftover (None when nothing was lifted).
    """

    adata: ad.AnnData
    query_build: str
    detection: BuildDetection | None
    liftover: dict | None = None


def _regions_of(adata: ad.AnnData) -> GenomicRegions:
    from ..project import regions_of

    return regions_of(adata)


def decide_lift(
    peaks: GenomicRegions,
    reference: Reference,
    *,
    query_genome: QueryGenome = "auto",
    liftover: bool = True,
    declared: object = None,
) -> tuple[str, BuildDetection | None, str | None]:
    """Decide the query's build and whether to lift it.

    Returns
    -------
    query_build, detection, lift_from
        ``lift_from`` is the build to lift from (to the reference's), or None.

    Raises
    ------
    GenomeBuildError
        The builds differ and ``liftover`` is False, or no chain links them.
    """
    if query_genome not in QUERY_GENOME_CHOICES:
        raise ParameterError(
            f"query_genome must be one of {', '.join(QUERY_GENOME_CHOICES)}, got {query_genome!r}."
        )
    ref_build = normalize_build(reference.genome)
    detection = None
    if query_genome == "auto":
        detection = detect_build(peaks, reference.model.universe, ref_build, declared=declared)
        query_build = detection.build if detection.confident else "unknown"
    else:
        query_build = query_genome
    if query_build == "unknown" or ref_build == "unknown" or query_build == ref_build:
        return query_build, detection, None
    how = (
        f"detected with confidence {detection.confidence:.1%}"
        if detection is not None
        else "as given"
    )
    if not liftover:
        raise GenomeBuildError(
            f"The query is on {query_build} ({how}) but the reference {reference.name!r} is on "
            f"{ref_build}, and liftover is turned off. Allow liftover to lift the peaks to "
            f"{ref_build}, or choose a reference built on {query_build}."
        )
    chain_between(query_build, ref_build)  # raises when no chain links the builds
    return query_build, detection, query_build


def lift_dataset(
    adata: ad.AnnData,
    source: str,
    target: str,
    *,
    min_match: float = 0.95,
    max_length_change: float = 0.1,
) -> tuple[ad.AnnData, LiftResult]:
    """Return a copy of ``adata`` with its peaks lifted from build ``source`` to ``target``.

    Dropped peaks are removed; see the module docstring for what ``var`` holds.
    """
    import anndata as ad
    import scipy.sparse as sp

    source, target = normalize_build(source), normalize_build(target)
    if adata.isbacked:
        adata = adata.to_memory()
    peaks = _regions_of(adata)
    result = lift_regions(
        peaks, chain_between(source, target), min_match=min_match,
        max_length_change=max_length_change,
    )  # fmt: skip
    if result.n_lifted == 0:
        raise GenomeBuildError(
            f"None of the {result.n_input:,} peaks could be lifted from {source} to {target} "
            f"({result.describe()}) Check that the data really is on {source}."
        )
    kept = result.kept
    x = adata.X
    x = sp.csr_matrix(x)[:, kept] if sp.issparse(x) else np.asarray(x)[:, kept]
    var = adata.var.iloc[kept].copy()
    var[f"{source}_chr"] = peaks.chrom[kept]
    var[f"{source}_start"] = peaks.start[kept]
    var[f"{source}_end"] = peaks.end[kept]
    var["chr"] = result.regions.chrom
    var["start"] = result.regions.start
    var["end"] = result.regions.end
    uns = dict(adata.uns)
    uns["genome"] = target
    out = ad.AnnData(X=x, obs=adata.obs.copy(), var=var, uns=uns)
    for key, value in adata.obsm.items():
        out.obsm[key] = value
    return out, result


def prepare_query(
    adata: ad.AnnData,
    reference: Reference,
    *,
    query_genome: QueryGenome = "auto",
    liftover: bool = True,
    min_match: float = 0.95,
    max_length_change: float = 0.1,
) -> PreparedQuery:
    """Put a query on its reference's genome build (detecting the build when ``auto``).

    Parameters
    ----------
    adata
        The query as read by :func:`scembed_core.io.read_dataset`.
    reference
        The reference it will be projected onto.
    query_genome
        ``auto`` (detect), ``hg19`` or ``hg38``.
    liftover
        Lift when the builds differ; when False, refuse with :class:`GenomeBuildError`.
    min_match, max_length_change
        Passed to :func:`~scembed_core.liftover.lift_regions`.

    Returns
    -------
    PreparedQuery
        The dataset to project and the record of what was done.
    """
    peaks = _regions_of(adata)
    read_info = adata.uns.get("scembed_read", {})
    done = read_info.get("liftover") if isinstance(read_info, dict) else None
    done = adata.uns.get("scembed_liftover", done)
    query_build, detection, lift_from = decide_lift(
        peaks, reference, query_genome=query_genome, liftover=liftover,
        declared=adata.uns.get("genome"),
    )  # fmt: skip
    if lift_from is None:
        return PreparedQuery(adata, query_build, detection, dict(done) if done else None)
    target = normalize_build(reference.genome)
    universe = reference.model.universe
    lifted, result = lift_dataset(
        adata, lift_from, target, min_match=min_match, max_length_change=max_length_change
    )
    before = map_peaks_to_universe(peaks, universe).n_mapped_peaks
    after = map_peaks_to_universe(result.regions, universe).n_mapped_peaks
    record = {
        **result.summary(),
        "source_build": lift_from,
        "target_build": target,
        "query_genome": query_genome,
        "min_match": float(min_match),
        "max_length_change": float(max_length_change),
        "overlap_before": before / max(result.n_input, 1),
        "overlap_after": after / max(result.n_input, 1),
    }
    if detection is not None:
        record["detection_confidence"] = float(detection.confidence)
    lifted.uns["scembed_liftover"] = record  # travels with the data (e.g. to the app's export)
    return PreparedQuery(lifted, query_build, detection, record)


def check_genome(peaks: GenomicRegions, genome: str) -> BuildDetection:
    """Check a declared build (e.g. ``train --genome``) against the peaks themselves.

    Only evidence that needs no reference is used (chromosome ends, contig names).

    Raises
    ------
    GenomeBuildError
        When the peaks confidently contradict ``genome``.
    """
    detection = detect_build(peaks)
    declared = normalize_build(genome)
    if declared != "unknown" and detection.confident and detection.build != declared:
        raise GenomeBuildError(
            f"The genome was given as {genome}, but the peaks look like {detection.build} "
            f"({detection.confidence:.1%}: {' '.join(detection.evidence)}) Pass --genome "
            f"{detection.build}, or check the data."
        )
    return detection


def chain_for_fragments(
    path: str | Path,
    reference: Reference,
    *,
    query_genome: QueryGenome = "auto",
    liftover: bool = True,
) -> Chain | None:
    """For a fragments file: the chain to lift it through while counting, or None.

    The build is detected on the file's first 200,000 fragments (``auto``). Pass the result
    to :func:`scembed_core.io.read_dataset` as ``liftover``; other formats give None.

    Raises
    ------
    GenomeBuildError
        As :func:`decide_lift`.
    """
    from ..io import detect_format, read_fragment_sample

    path = Path(path)
    if not path.is_file() or detect_format(path) != "fragments":
        return None
    sample = read_fragment_sample(path)
    _, _, lift_from = decide_lift(sample, reference, query_genome=query_genome, liftover=liftover)
    return None if lift_from is None else chain_between(lift_from, reference.genome)
