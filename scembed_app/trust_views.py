"""Trust views: the dataset verdict banner and the Unknown rule, shared by the pages.

The rules live in the engine (:mod:`scembed_core.fit`, :mod:`scembed_core.labels.unknown`);
this module only draws them: a banner per verdict, the rule in plain words with its measured
recall, and the strictness slider marked at the calibrated point.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from scembed_app import cached, state, widgets
from scembed_core.errors import ScEmbedError

ICONS = {"good": ":material/verified:", "caution": ":material/warning:"}
TITLES = {
    "good": "The dataset fits the reference",
    "caution": "Read the results with caution",
    "does_not_fit": "The dataset does not fit the reference",
}


def dataset_fit(dataset: Any, reference_key: str, reference: Any) -> dict | None:
    """The verdict of the dataset as it will be projected (lifted or as uploaded)."""
    lifted_from = (dataset.liftover or {}).get("source_build") if dataset.liftover else None
    try:
        return cached.cached_fit(
            dataset.digest, reference_key, lifted_from, dataset.adata, reference
        )
    except ScEmbedError:  # the verdict is advice: a dataset it cannot judge gets none
        return None


def fit_banner(fit: dict | None, unknown_fraction: float | None = None) -> None:
    """A success / warning / error banner with the verdict and its one-sentence reason."""
    if not fit:
        return
    if unknown_fraction is not None:
        from scembed_core.fit import with_unknown

        fit = with_unknown(fit, unknown_fraction)
    verdict = fit["verdict"]
    cause = "" if fit["cause"] == "none" else f" (cause: {fit['cause'].replace('_', ' ')})"
    text = f"**{TITLES[verdict]}**{cause}. {fit['reason']}"
    if verdict == "good":
        st.success(text, icon=ICONS["good"])
    elif verdict == "caution":
        st.warning(text, icon=ICONS["caution"])
    else:  # advice, not an error of the app: a warning with its own icon
        st.warning(text, icon=":material/block:")


def data_banner(dataset: Any, reference_key: str, reference: Any) -> dict | None:
    """The Data page's verdict (replaces the old low-overlap build warning)."""
    fit = dataset_fit(dataset, reference_key, reference)
    fit_banner(fit)
    return fit


def unknown_controls(reference: Any) -> None:
    """The Unknown rule in plain words and the strictness slider (Annotation page)."""
    from scembed_core.labels.loto import unknown_rule
    from scembed_core.labels.unknown import describe_rule

    rule = unknown_rule(reference)
    if rule is None:
        st.caption("This reference has no Unknown rule (it needs labelled cells of 3+ types).")
        return
    st.slider(
        "Unknown strictness: share of known cells allowed to be called Unknown",
        min_value=0.0,
        max_value=0.2,
        step=0.01,
        help="0 turns the rule off. The calibrated point is "
        f"{rule.target_fpr:.0%}: there, hiding each cell type of the reference in turn, the "
        f"rule caught {rule.recall:.0%} of the hidden type's cells.",
        **widgets.bound(state.UNKNOWN_RATE),
    )
    rate = float(st.session_state[state.UNKNOWN_RATE])
    mark = (
        "(the calibrated point)"
        if abs(rate - rule.target_fpr) < 1e-9
        else (f"(calibrated point: {rule.target_fpr:.0%})")
    )
    if rate > 0:
        st.caption(
            f"At {rate:.0%} {mark}: about {rule.recall_at(rate):.0%} of cells of a type the "
            "reference lacks are caught (measured by leave-one-type-out on the reference)."
        )
    else:
        st.caption(f"The Unknown rule is off {mark}.")
    with st.expander("How Unknown is decided", icon=":material/help:"):
        st.markdown(describe_rule(rule))
        st.markdown(
            "*Unknown* means the cell looks like none of the reference's cell types; "
            "*Unassigned* means it has no embedding (no reference region) or fell below "
            "your probability or distance limits. A cluster whose cells are mostly Unknown "
            "is flagged as a whole. Per hidden type: "
            + ", ".join(
                f"{name} {value:.0%}"
                for name, value in sorted(rule.info.get("per_type_recall", {}).items())
            )
        )


def reference_rule(reference: Any) -> None:
    """The Reference page's summary of the stored rule and the coverage curve."""
    from scembed_core.labels.loto import trust_calibration
    from scembed_core.labels.unknown import UnknownRule, describe_rule

    calibration = trust_calibration(reference)
    if not calibration:
        return
    st.markdown("**Cell types the reference lacks (Unknown rule)**")
    rule = UnknownRule.from_dict(calibration["unknown_rule"])
    st.markdown(describe_rule(rule))
    if rule.info.get("source") != "build":
        st.caption(
            "Computed from the stored cells when the reference was loaded (the bundle "
            "predates the rule): not coverage-aware, and no coverage curve."
        )
    curve = calibration.get("coverage_curve")
    if curve:
        st.caption(
            "Expected accuracy by coverage (held-out reference cells thinned): "
            + ", ".join(
                f"{r:.0f} regions {a:.0%}"
                for r, a in zip(curve["regions_per_cell"], curve["accuracy"], strict=True)
            )
        )
