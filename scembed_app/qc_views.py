"""The Data page's quality control before projection: metrics, thresholds, a live count.

Metrics come from :func:`scembed_core.qc.cell_qc` (cached per dataset and reference):
peaks per cell, reference regions per cell, the promoter fraction (hg19/hg38 gene
annotation) and, for a fragments upload, FRiP and the TSS enrichment (read again from the
uploaded file while it is in the uploader). Each threshold updates the count of cells that
pass at once; *Keep the N cells that pass* replaces the tab's dataset by the filtered one,
whose ``uns["scembed_qc"]`` lists every filtered cell and why (it travels into the
exported ``.h5ad`` and ``run.json``, and the workspace). *Undo* brings the unfiltered
dataset back while the tab keeps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from scembed_app import figures, state, widgets
from scembed_app.cached import UPLOAD_TTL
from scembed_app.uploads import LoadedDataset

#: metric column -> (title, [(threshold field, label)], integer?, log axis?)
METRICS: dict[str, tuple[str, list[tuple[str, str]], bool, bool]] = {
    "n_peaks": (
        "Peaks per cell",
        [("min_peaks", "Min. peaks"), ("max_peaks", "Max. peaks (0: none)")],
        True,
        True,
    ),
    "regions_in_universe": (
        "Reference regions per cell",
        [("min_regions_in_universe", "Min. reference regions")],
        True,
        True,
    ),
    "promoter_fraction": (
        "Fraction of peaks in promoters",
        [("min_promoter_fraction", "Min. promoter fraction")],
        False,
        False,
    ),
    "frip": ("Fraction of fragments in peaks (FRiP)", [("min_frip", "Min. FRiP")], False, False),
    "tss_enrichment": (
        "TSS enrichment",
        [("min_tss_enrichment", "Min. TSS enrichment")],
        False,
        False,
    ),
}
QC_KEY = "scembed_qc"


@st.cache_data(show_spinner=False, max_entries=8, ttl=UPLOAD_TTL)
def _qc_table(
    digest: str, reference_key: str, genome: str, _adata: Any, _n_regions: Any
) -> pd.DataFrame:
    from scembed_core.qc import cell_qc

    return cell_qc(_adata, genome=genome, regions_in_universe=_n_regions)


@st.cache_data(show_spinner=False, max_entries=4, ttl=UPLOAD_TTL)
def _tss(file_digest: str, genome: str, name: str, _payload: bytes) -> pd.DataFrame:
    from scembed_core.qc import tss_enrichment

    with tempfile.TemporaryDirectory(prefix="scembed-qc-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(_payload)
        return tss_enrichment(path, genome)


def _fragments_tss(adata: Any, files: list | None, genome: str) -> pd.Series | None:
    """TSS enrichment of a fragments upload still in the uploader (None otherwise)."""
    read = adata.uns.get("scembed_read") or {}
    if read.get("format") != "fragments" or not files:
        return None
    lift = read.get("liftover") or {}
    build = str(lift.get("source_build") or genome)  # the file's own build
    from scembed_app.uploads import FRAGMENT_SUFFIXES

    candidates = [f for f in files if f.name.endswith(FRAGMENT_SUFFIXES)]
    if len(candidates) != 1:
        return None
    payload = candidates[0].getvalue()
    with st.spinner("Measuring TSS enrichment from the fragments..."):
        table = _tss(hashlib.sha256(payload).hexdigest(), build, candidates[0].name, payload)
    return table["tss_enrichment"]


def section(
    dataset: LoadedDataset,
    reference_key: str,
    reference: Any,
    n_regions: np.ndarray,
    files: list | None = None,
) -> None:
    """Draw the QC section (metrics, thresholds, live count, keep/undo)."""
    from scembed_core.errors import ScEmbedError
    from scembed_core.qc import QCThresholds, filter_cells, qc_pass

    st.subheader("Quality control", anchor=False)
    adata = dataset.adata
    record = adata.uns.get(QC_KEY)
    if record is not None:
        _applied(record)
        return
    genome = str(reference.genome)
    try:
        table = _qc_table(dataset.digest, reference_key, genome, adata, n_regions)
        tss = _fragments_tss(adata, files, genome)
    except ScEmbedError as exc:
        widgets.show_engine_error(exc, hint="QC metrics could not be computed.")
        return
    if tss is not None:
        table = table.assign(tss_enrichment=tss.reindex(table.index).to_numpy(dtype=float))
    notes = []
    if "promoter_fraction" not in table:
        notes.append(f"promoter fraction: no gene annotation for {genome} (hg19, hg38 only)")
    if "frip" not in table:
        notes.append("FRiP and TSS enrichment: upload a fragments file")
    st.caption(
        "Filter cells before projecting: set a threshold and the count of cells that pass "
        "updates. Filtered cells are recorded, never dropped silently."
        + (f" Not available here: {'; '.join(notes)}." if notes else "")
    )
    values: dict[str, float | None] = {}
    shown = [m for m in METRICS if m in table]
    columns = st.columns(min(len(shown), 3))
    for i, metric in enumerate(shown):
        title, fields, integer, log_x = METRICS[metric]
        with columns[i % len(columns)]:
            data = table[metric].to_numpy(dtype=float)
            widgets.plot(
                figures.histogram(data, title=title, x_title=title.lower(), log_x=log_x),
                key=f"qc_hist_{metric}",
            )
            for field, label in fields:
                top = float(np.nanmax(data)) if np.isfinite(data).any() else 0.0
                value = st.number_input(
                    label,
                    min_value=0 if integer else 0.0,
                    max_value=None if integer else max(top, 1.0),
                    value=0 if integer else 0.0,
                    step=1 if integer else 0.01,
                    key=f"qc_{field}",
                )
                values[field] = value if value else None
    thresholds = QCThresholds(**values)
    checks = qc_pass(table, thresholds)
    n_pass, n = int(checks["pass"].sum()), len(table)
    left, right = st.columns([1, 2])
    left.metric("Cells that pass", f"{n_pass:,} of {n:,}")
    failing = {rule: int((~checks[rule]).sum()) for rule in checks.columns if rule != "pass"}
    if failing:
        right.caption(
            "Cells failing each rule: "
            + ", ".join(f"{rule.replace('_', ' ')} {count:,}" for rule, count in failing.items())
        )
    if right.button(
        f"Keep the {n_pass:,} cells that pass",
        disabled=n_pass in (0, n),
        icon=":material/filter_alt:",
        help="Replaces this tab's dataset by the passing cells; the filtered ones are listed "
        "in the exported file and run.json.",
    ):
        filtered = filter_cells(adata, table, thresholds)
        tag = hashlib.sha256(json.dumps(thresholds.to_dict(), sort_keys=True).encode()).hexdigest()[
            :12
        ]
        state.set_dataset(
            dataclasses.replace(
                dataset,
                name=f"{dataset.name} (QC: {n_pass:,} of {n:,} cells)",
                digest=f"{dataset.digest}|qc:{tag}",
                adata=filtered,
            )
        )
        st.session_state[state.QC_UNFILTERED] = dataset
        st.rerun()


def _applied(record: dict) -> None:
    """The filter in force: what was kept, why cells went, and undo."""
    thresholds = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in record["thresholds"].items())
    st.success(
        f"QC filter applied ({thresholds}): {record['n_kept']:,} of {record['n_cells']:,} "
        f"cells kept, {record['n_filtered']:,} filtered. The filtered cells and why are "
        "recorded in the exported .h5ad (`uns['scembed_qc']`) and in run.json.",
        icon=":material/filter_alt:",
    )
    by_rule = record.get("n_failed_by_rule") or {}
    if by_rule:
        st.caption(
            "Cells failing each rule: "
            + ", ".join(f"{rule.replace('_', ' ')} {int(n):,}" for rule, n in by_rule.items())
        )
    unfiltered = st.session_state.get(state.QC_UNFILTERED)
    if unfiltered is not None and st.button("Undo the QC filter", icon=":material/undo:"):
        state.set_dataset(unfiltered)
        st.session_state[state.QC_UNFILTERED] = None
        st.rerun()
