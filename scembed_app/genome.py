"""Genome builds in the app: the Data page's build panel and the liftover summary line.

The panel detects the uploaded dataset's build against the reference (cached per upload
digest + reference), shows it beside the reference's with the universe overlap before and
after liftover, and, when detection is confident and the builds differ, lifts the peaks
onto the reference's build unless the toggle is off. The lifted dataset replaces the
uploaded one in session state under a digest that names the liftover, so every later cache
entry (coverage, projection, labels) is keyed on the choice; the uploaded one is kept as
``original`` so turning the toggle off restores it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from scembed_app import cached, state, widgets
from scembed_app.uploads import LoadedDataset
from scembed_core.errors import ScEmbedError


def describe_liftover(record: dict) -> str:
    """One sentence about a liftover record (peaks lifted, dropped and why)."""
    what = "Fragments" if record.get("what") == "fragments" else "Peaks"
    text = (
        f"{what} were lifted from {record['source_build']} to {record['target_build']} "
        f"({record['chain']}): {record['n_lifted']:,} of {record['n_peaks']:,} lifted"
    )
    from scembed_core.liftover.lift import REASON_TEXT

    dropped = record.get("dropped") or {}
    if dropped:
        text += ", dropped " + ", ".join(
            f"{n:,} {REASON_TEXT.get(reason, reason)}" for reason, n in dropped.items()
        )
    else:
        text += ", none dropped"
    return text + "."


def build_panel(dataset: LoadedDataset, reference_key: str, reference: Any) -> LoadedDataset:
    """Draw the build panel; returns the dataset to use (lifted or as uploaded)."""
    from scembed_core.liftover import normalize_build

    uploaded = dataset.original or dataset
    if uploaded.liftover and uploaded.liftover.get("what") == "fragments":
        st.success(describe_liftover(uploaded.liftover), icon=":material/swap_horiz:")
        return _use(dataset, uploaded)  # lifted while counting: already on the reference's build
    try:
        with st.spinner("Checking the genome build..."):
            detection = cached.cached_build_detection(
                uploaded.digest, reference_key, uploaded.adata, reference
            )
    except ScEmbedError as exc:
        widgets.show_engine_error(exc)
        return _use(dataset, uploaded)
    ref_build = normalize_build(reference.genome)
    cols = st.columns(4)
    cols[0].metric(
        "Detected build",
        detection.build or "unknown",
        help="From the peaks: universe overlap as-is and after liftover, coordinates past "
        "chromosome ends, contig names. " + " ".join(detection.evidence),
    )
    cols[1].metric("Detection confidence", f"{detection.confidence:.1%}")
    cols[2].metric("Reference build", reference.genome)
    if detection.overlap_lifted is not None:
        other = "hg38" if ref_build == "hg19" else "hg19"
        cols[3].metric(
            "Overlap as-is / lifted",
            f"{detection.overlap_as_is:.1%} / {detection.overlap_lifted:.1%}",
            help=f"Peaks overlapping the universe as uploaded, and after lifting them from "
            f"{other} to {ref_build}.",
        )
    differs = detection.build is not None and ref_build != "unknown"
    differs = differs and detection.build != ref_build
    if not differs:
        return _use(dataset, uploaded)
    if not detection.confident:
        st.warning(
            f"The peaks may be on {detection.build} (confidence {detection.confidence:.0%}, "
            "not enough to lift them over automatically).",
            icon=":material/warning:",
        )
        return _use(dataset, uploaded)
    lift = st.toggle(
        f"Lift the peaks over from {detection.build} to {ref_build}",
        help="UCSC liftOver chain (hg19 <-> hg38); peaks that do not lift cleanly are dropped.",
        **widgets.bound(state.LIFTOVER),
    )
    if not lift:
        st.warning(
            f"Not lifted: the peaks look like {detection.build} and the reference is on "
            f"{ref_build}, so most of them miss the reference regions.",
            icon=":material/warning:",
        )
        return _use(dataset, uploaded)
    digest = f"{uploaded.digest}|{reference_key}|lift:{detection.build}>{ref_build}"
    if dataset.digest == digest:  # lifted on an earlier run (same reference): reuse it
        lifted = dataset
    else:
        try:
            with st.spinner(f"Lifting the peaks from {detection.build} to {ref_build}..."):
                prepared = cached.cached_lift_query(
                    uploaded.digest, reference_key, detection.build, uploaded.adata, reference
                )
        except ScEmbedError as exc:
            widgets.show_engine_error(exc, hint="Choose a reference on the data's genome build.")
            return _use(dataset, uploaded)
        lifted = LoadedDataset(
            name=uploaded.name,
            digest=digest,
            adata=prepared.adata,
            n_bytes=uploaded.n_bytes,
            original=uploaded,
            liftover=prepared.liftover,
            sha256=uploaded.sha256,
        )
    record = lifted.liftover
    st.success(
        describe_liftover(record)
        + f" Overlap with the universe: {record['overlap_before']:.1%} -> "
        f"{record['overlap_after']:.1%}.",
        icon=":material/swap_horiz:",
    )
    return _use(dataset, lifted)


def _use(current: LoadedDataset, wanted: LoadedDataset) -> LoadedDataset:
    """Make ``wanted`` the tab's dataset if it is not already (drops stale results)."""
    if wanted.digest != current.digest:
        state.set_dataset(wanted, new_data=False)  # the same cells on another build
    return wanted
