"""Does this dataset fit the reference? One verdict per dataset, with its cause and numbers.

:func:`assess_fit` is computed before projection (from the peaks and the coverage alone)
and refined after labelling (:func:`with_unknown`, the share of cells the calibrated
Unknown rule flags). Its result is a plain dict, stored as ``uns["scembed"]["fit"]``:

``verdict``
    ``good``, ``caution`` or ``does_not_fit``.
``cause``
    The first problem found, in this order: ``genome_build`` (the build detection is
    confident the peaks are on another build than the reference, and they were not
    lifted), ``peak_set`` (few of the dataset's peaks overlap the reference's regions: a
    different peak set), ``low_depth`` (cells cover too few reference regions for the
    labels to be reliable), ``cell_types`` (many cells look like no reference type), or
    ``none``.
``reason``
    One sentence for people, with what to do.
``numbers``
    ``peak_overlap`` (fraction of the dataset's peaks overlapping the universe),
    ``median_regions`` (reference regions per cell, median) and the reference cells' own
    ``reference_median_regions``, ``expected_accuracy`` (the reference's held-out cells
    thinned to this coverage, from the curve measured when the reference was built; see
    :func:`scembed_core.labels.unknown.calibrate_trust`) beside ``full_accuracy``,
    ``unknown_fraction`` (after labelling), the detected and the reference build.

Thresholds
----------
A peak overlap below :data:`PEAK_SET_BAD` does not fit, below :data:`PEAK_SET_CAUTION`
needs caution (the demo query overlaps 100%; another lab's peak set 2.6%). Depth is judged
by the expected accuracy relative to full coverage (below :data:`DEPTH_BAD` does not fit,
below :data:`DEPTH_CAUTION` caution); a reference without the coverage curve falls back to
absolute region counts (:data:`MIN_REGIONS_BAD`, :data:`MIN_REGIONS_CAUTION`). Unknown
cells: the calibrated rule flags about 5% of cells of known types, so at least
:data:`UNKNOWN_CAUTION` needs caution and :data:`UNKNOWN_BAD` does not fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import ParameterError

if TYPE_CHECKING:
    import anndata as ad

    from .liftover.builds import BuildDetection
    from .project import Coverage
    from .reference import Reference

__all__ = [
    "VERDICTS",
    "CAUSES",
    "assess_fit",
    "judge_fit",
    "with_unknown",
    "expected_accuracy",
    "FitRejected",
]

VERDICTS = ("good", "caution", "does_not_fit")
CAUSES = ("peak_set", "genome_build", "low_depth", "cell_types", "none")
PEAK_SET_BAD = 0.25
PEAK_SET_CAUTION = 0.6
DEPTH_BAD = 0.6
DEPTH_CAUTION = 0.85
MIN_REGIONS_BAD = 10
MIN_REGIONS_CAUTION = 30
UNKNOWN_CAUTION = 0.15
UNKNOWN_BAD = 0.5


class FitRejected(ParameterError):
    """``--strict``: the dataset does not fit the reference."""


def expected_accuracy(curve: dict | None, regions: float) -> float | None:
    """Accuracy of the reference's held-out cells thinned to ``regions`` regions per cell.

    Parameters
    ----------
    curve
        The coverage curve (``regions_per_cell``, ``accuracy``) of the reference's trust
        calibration, or None.
    regions
        Regions per cell (interpolated on a log scale, clipped to the measured range).

    Returns
    -------
    float or None
        The expected accuracy, or None without a curve.
    """
    if not curve or not curve.get("regions_per_cell"):
        return None
    x = np.log(np.maximum(np.asarray(curve["regions_per_cell"], dtype=float), 1.0))
    y = np.asarray(curve["accuracy"], dtype=float)
    order = np.argsort(x)
    return float(np.interp(np.log(max(float(regions), 1.0)), x[order], y[order]))


def _builds_differ(detection: BuildDetection | None, reference: Reference) -> str | None:
    from .liftover.builds import normalize_build

    if detection is None or not detection.confident:
        return None
    ours = normalize_build(reference.genome)
    theirs = normalize_build(detection.build)
    if ours in ("hg19", "hg38") and theirs != ours:
        return theirs
    return None


def assess_fit(
    adata: ad.AnnData,
    reference: Reference,
    *,
    coverage: Coverage | None = None,
    detection: BuildDetection | None = None,
    detect: bool = True,
    lifted_from: str | None = None,
) -> dict:
    """Judge how well the dataset fits the reference from its peaks and coverage.

    Parameters
    ----------
    adata
        The query as it will be projected (after any liftover).
    reference
        The reference.
    coverage
        Its :func:`~scembed_core.project.compute_coverage` (computed when None).
    detection
        The genome build detection (run here when None and ``detect``).
    detect
        Run the build detection when ``detection`` is None.
    lifted_from
        The build the peaks were lifted from (they are on the reference's build now).

    Returns
    -------
    dict
        ``verdict``, ``cause``, ``reason``, ``numbers`` (see the module docstring).
    """
    from .project import compute_coverage, regions_of

    if coverage is None:
        coverage = compute_coverage(adata, reference)
    if detection is None and detect and lifted_from is None:
        from .liftover.builds import detect_build

        detection = detect_build(
            regions_of(adata),
            reference.model.universe,
            reference.genome,
            declared=adata.uns.get("genome"),
        )
    counts = np.asarray(coverage.n_regions_per_cell)
    return judge_fit(
        reference,
        peak_overlap=float(coverage.fraction_peaks_mapped),
        n_peaks=int(coverage.mapping.n_peaks),
        median_regions=float(np.median(counts)) if len(counts) else 0.0,
        n_cells=int(len(counts)),
        n_unmapped_cells=int(coverage.n_unmapped_cells),
        detection=detection,
        lifted_from=lifted_from,
    )


def judge_fit(
    reference: Reference,
    *,
    peak_overlap: float,
    n_peaks: int,
    median_regions: float,
    n_cells: int,
    n_unmapped_cells: int,
    detection: BuildDetection | None = None,
    lifted_from: str | None = None,
) -> dict:
    """Apply the verdict's rules to the numbers (what :func:`assess_fit` and the Dask path call).

    Parameters
    ----------
    reference
        The reference (its trust calibration gives the coverage curve).
    peak_overlap
        Fraction of the dataset's peaks overlapping the universe.
    n_peaks
        Number of peaks.
    median_regions
        Median reference regions per cell.
    n_cells, n_unmapped_cells
        Cells, and cells covering no trained region.
    detection
        The genome build detection (None: not run).
    lifted_from
        The build the peaks were lifted from, if they were.

    Returns
    -------
    dict
        ``verdict``, ``cause``, ``reason``, ``numbers`` (see the module docstring).
    """
    from .labels.loto import trust_calibration

    calibration = trust_calibration(reference) or {}
    curve = calibration.get("coverage_curve")
    median = float(median_regions)
    expected = expected_accuracy(curve, median)
    full = float(curve["accuracy"][0]) if curve else None
    numbers = {
        "peak_overlap": float(peak_overlap),
        "n_peaks": int(n_peaks),
        "median_regions": median,
        "reference_median_regions": curve.get("reference_median_regions") if curve else None,
        "expected_accuracy": expected,
        "full_accuracy": full,
        "n_unmapped_cells": int(n_unmapped_cells),
        "n_cells": int(n_cells),
        "reference_build": reference.genome,
        "detected_build": None if detection is None else detection.build,
        "detection_confidence": None if detection is None else float(detection.confidence),
        "lifted_from": lifted_from,
        "unknown_fraction": None,
    }
    other = _builds_differ(detection, reference) if lifted_from is None else None
    overlap = numbers["peak_overlap"]
    where = f"the reference's {reference.n_regions:,} regions"
    if other is not None:
        return _verdict(
            "does_not_fit",
            "genome_build",
            f"The peaks are on {other} (detected with {detection.confidence:.0%} confidence) "
            f"but the reference is on {reference.genome}: lift them over first (the app and "
            f"`project` do it by default) before trusting anything here.",
            numbers,
        )
    if overlap < PEAK_SET_CAUTION:
        verdict = "does_not_fit" if overlap < PEAK_SET_BAD else "caution"
        return _verdict(
            verdict,
            "peak_set",
            f"Only {overlap:.1%} of the dataset's {numbers['n_peaks']:,} peaks overlap {where}, "
            f"so it was called on another peak set (the genome build is not the problem) "
            f"and cells keep a median of {median:.0f} reference regions: use a reference "
            "whose regions cover the genome, or train one on this data (Train page).",
            numbers,
        )
    ref_median = numbers["reference_median_regions"]
    if expected is not None and full:
        ratio = expected / full
        low = ratio < DEPTH_CAUTION
        verdict = "does_not_fit" if ratio < DEPTH_BAD else "caution"
        own = f" (its own cells: {ref_median:.0f})" if ref_median else ""
        text = (
            f"Cells cover a median of {median:.0f} reference regions{own}; the reference's "
            f"held-out cells thinned to that coverage were labelled correctly "
            f"{expected:.0%} of the time, against {full:.0%} at full coverage"
        )
    else:
        low = median < MIN_REGIONS_CAUTION
        verdict = "does_not_fit" if median < MIN_REGIONS_BAD else "caution"
        text = f"Cells cover a median of {median:.0f} reference regions"
    if low:
        return _verdict(
            verdict,
            "low_depth",
            text + ": the data are too sparse for reliable labels (sequence deeper, or "
            "merge cells into pseudo-bulks).",
            numbers,
        )
    accuracy = f"; expected accuracy {expected:.0%}" if expected is not None else ""
    lifted = f" after lifting the peaks from {lifted_from}" if lifted_from else ""
    return _verdict(
        "good",
        "none",
        f"{overlap:.0%} of the peaks overlap {where}{lifted} and cells cover a median of "
        f"{median:.0f} of them{accuracy}.",
        numbers,
    )


def _verdict(verdict: str, cause: str, reason: str, numbers: dict) -> dict:
    return {"verdict": verdict, "cause": cause, "reason": reason, "numbers": dict(numbers)}


def with_unknown(fit: dict, unknown_fraction: float) -> dict:
    """Refine the verdict by the share of cells labelled ``"Unknown"`` (after labelling).

    Parameters
    ----------
    fit
        :func:`assess_fit` output.
    unknown_fraction
        Share of the cells with an embedding that the Unknown rule flags.

    Returns
    -------
    dict
        A new verdict: unchanged when it already names a cause; ``cell_types`` with
        ``caution`` or ``does_not_fit`` when the share is high.
    """
    numbers = {**fit.get("numbers", {}), "unknown_fraction": float(unknown_fraction)}
    out = {**fit, "numbers": numbers}
    if fit.get("cause", "none") != "none" or unknown_fraction < UNKNOWN_CAUTION:
        if fit.get("cause", "none") == "none":
            out["reason"] = fit["reason"] + f" {unknown_fraction:.0%} of cells are Unknown."
        return out
    verdict = "does_not_fit" if unknown_fraction >= UNKNOWN_BAD else "caution"
    return _verdict(
        verdict,
        "cell_types",
        f"{unknown_fraction:.0%} of the cells look like no cell type of the reference "
        "(the calibrated Unknown rule flags about 5% of cells of known types): the data "
        "hold cell types or states the reference lacks; read their labels as 'closest "
        "reference type' at best.",
        numbers,
    )
