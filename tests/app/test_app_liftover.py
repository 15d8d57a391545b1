"""App: the Data page detects the genome build, lifts hg38 peaks onto the hg19 reference by
default (a toggle turns it off), and the Project page says what was lifted."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import PBMC_TINY
from test_app import goto, metric, open_app, upload

from scembed_app import state
from scembed_core.reference import DEMO_QUERY_PATH

pytestmark = pytest.mark.xdist_group("app")


def write_demo_hg38(path):
    """Write the demo query lifted to hg38 (as an hg38 user would upload it) to ``path``."""
    import anndata as ad

    from scembed_core.io import read_dataset
    from scembed_core.liftover.query import lift_dataset

    demo = read_dataset(DEMO_QUERY_PATH)
    lifted, _ = lift_dataset(demo, "hg19", "hg38")
    var = lifted.var[["chr", "start", "end"]].copy()
    var.index = pd.Index(
        var["chr"] + "_" + var["start"].astype(str) + "_" + var["end"].astype(str)
    ).astype(str)
    keep = ~var.index.duplicated()
    out = ad.AnnData(lifted.X[:, keep], obs=demo.obs[["cell_type"]].copy(), var=var[keep])
    out.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def demo_hg38_bytes(tmp_path_factory) -> bytes:
    return write_demo_hg38(tmp_path_factory.mktemp("hg38") / "demo_hg38.h5ad").read_bytes()


def toggle(at, label_start: str):
    matches = [t for t in at.toggle if t.label.startswith(label_start)]
    assert matches, f"no toggle {label_start!r}; toggles: {[t.label for t in at.toggle]}"
    return matches[0]


def test_data_page_detects_hg38_and_lifts_by_default(demo_hg38_bytes):
    at = upload(goto(open_app(), state.PAGE_DATA), "demo_hg38.h5ad", demo_hg38_bytes)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Detected build") == "hg38"
    assert metric(at, "Reference build") == "hg19"
    assert float(metric(at, "Detection confidence").rstrip("%")) > 99
    before, after = (
        float(v.rstrip("%")) for v in metric(at, "Overlap as-is / lifted").split(" / ")
    )
    assert before < 10 and after > 99
    switch = toggle(at, "Lift the peaks over from hg38 to hg19")
    assert switch.value is True
    dataset = at.session_state[state.DATASET]
    assert dataset.liftover["source_build"] == "hg38" and dataset.original is not None
    assert dataset.digest.endswith("|lift:hg38>hg19")
    assert any("Peaks were lifted from hg38 to hg19" in s.value for s in at.success)
    assert float(metric(at, "Peaks in universe").rstrip("%")) > 99

    goto(at, state.PAGE_PROJECT)
    assert any("Peaks were lifted from hg38 to hg19" in i.value for i in at.info)

    goto(at, state.PAGE_DATA)
    toggle(at, "Lift the peaks over").set_value(False).run()
    assert not at.exception, [e.value for e in at.exception]
    dataset = at.session_state[state.DATASET]
    assert dataset.liftover is None and "|lift" not in dataset.digest
    assert any(w.value.startswith("Not lifted") for w in at.warning)
    assert float(metric(at, "Peaks in universe").rstrip("%")) < 10
    toggle(at, "Lift the peaks over").set_value(True).run()
    assert at.session_state[state.DATASET].liftover is not None


def test_data_page_says_hg38_for_the_real_pbmc_fixture():
    at = upload(goto(open_app(), state.PAGE_DATA), "pbmc_hg38_tiny.h5ad", PBMC_TINY.read_bytes())
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Detected build") == "hg38"
    assert at.session_state[state.DATASET].liftover["target_build"] == "hg19"
    # 20 cells x 1,000 peaks against a 10,000-region universe: overlap stays low, and the
    # warning no longer blames the genome build
    warnings = " ".join(w.value for w in at.warning)
    assert "even after lifting them from hg38 to hg19" in warnings


def test_demo_on_the_reference_build_is_not_lifted():
    at = goto(open_app(), state.PAGE_DATA)
    [b for b in at.button if b.label == "Load demo dataset"][0].click().run()
    assert metric(at, "Detected build") == "hg19"
    assert not [t for t in at.toggle if t.label.startswith("Lift")]
    assert at.session_state[state.DATASET].liftover is None


def test_hg38_fragments_upload_is_lifted_while_counting(tmp_path):
    from test_liftover import write_fragments

    from scembed_core.reference import load_default_reference

    _, hg38, _ = write_fragments(tmp_path, load_default_reference())
    at = upload(goto(open_app(), state.PAGE_DATA), "fragments.tsv.gz", hg38.read_bytes())
    assert not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Fragments were lifted from hg38") for s in at.success)
    assert at.session_state[state.DATASET].liftover["what"] == "fragments"
    assert float(metric(at, "Peaks in universe").rstrip("%")) > 0
