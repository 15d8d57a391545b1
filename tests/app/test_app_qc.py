"""QC before projection in the app (AppTest, the real demo and built-in reference):
thresholds give a live count, keeping the passing cells records the filtered ones, undo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from apptest_tools import button, checked, goto, metric
from streamlit.testing.v1 import AppTest

from scembed_app import reproduce, state

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_thresholds_count_keep_record_and_undo():
    at = checked(AppTest.from_file(APP, default_timeout=240).run())
    goto(at, state.PAGE_DATA)
    checked(button(at, "Load demo dataset").click().run())
    demo = at.session_state[state.DATASET].adata
    assert metric(at, "Cells that pass") == f"{demo.n_obs:,} of {demo.n_obs:,}"
    hist_keys = {chart.proto.id for chart in at.get("plotly_chart")}
    assert len(hist_keys) >= 4, "coverage + peaks, regions and promoter fraction"
    peaks = np.diff(demo.X.tocsr().indptr)
    limit = int(np.median(peaks))
    checked(at.number_input(key="qc_min_peaks").set_value(limit).run())
    n_pass = int((peaks >= limit).sum())
    assert metric(at, "Cells that pass") == f"{n_pass:,} of {demo.n_obs:,}"
    checked(at.number_input(key="qc_min_promoter_fraction").set_value(0.3).run())
    assert at.session_state[state.DATASET].adata is demo, "nothing changes before Keep"
    checked(
        button(at, f"Keep the {metric(at, 'Cells that pass').split()[0]} cells that pass")
        .click()
        .run()
    )
    kept = at.session_state[state.DATASET].adata
    record = kept.uns["scembed_qc"]
    assert kept.n_obs == record["n_kept"] < demo.n_obs
    assert record["n_filtered"] == len(record["filtered_cells"]) == demo.n_obs - kept.n_obs
    assert set(record["filtered_cells"]) == set(demo.obs_names) - set(kept.obs_names)
    assert (kept.obs["qc_n_peaks"] >= limit).all() and (
        kept.obs["qc_promoter_fraction"] >= 0.3
    ).all()
    assert any("QC filter applied" in s.value for s in at.success)
    digest = at.session_state[state.DATASET].digest
    assert digest.startswith(at.session_state[state.QC_UNFILTERED].digest + "|qc:")
    run_json = reproduce.run_spec(
        spec="default",
        reference=None,
        dataset=at.session_state[state.DATASET],
        params={},
        hosted=False,
    )
    assert run_json["qc"]["filtered_cells"] == list(record["filtered_cells"])
    assert run_json["input"]["n_cells"] == kept.n_obs
    checked(button(at, "Undo the QC filter").click().run())
    assert at.session_state[state.DATASET].adata is demo
