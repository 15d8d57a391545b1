"""The landing page's cold start: what a fresh server imports before the first chart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Libraries the landing page's charts do not need (each costs 0.2-1.2 s to import here).
HEAVY = ("anndata", "h5py", "scipy", "numba", "sklearn", "hnswlib", "igraph", "umap", "dask")


def test_the_landing_page_draws_its_charts_without_heavy_imports():
    """Everything the router and the Reference page run, in a fresh process: their modules,
    the compact map of the built-in reference, both figures and what the sections below
    them read (the classifier card, the Unknown rule): the full reference is loaded in the
    background afterwards, never by the landing page."""
    code = (
        "import sys\n"
        "from scembed_app import router, workspaces, cached, deployment, figures, guards\n"
        "from scembed_app import quickref, state, widgets\n"
        "summary = quickref.quick_summary('default')\n"
        "figures.count_bar(summary.label_counts('cell_type'))\n"
        "figures.reference_map(summary.coords, summary.labels('cell_type'))\n"
        "from scembed_core.labels.loto import trust_calibration\n"  # the sections below them
        "assert summary.read_label_model() is not None and trust_calibration(summary)\n"
        f"print(summary.n_cells, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    n_cells, loaded = out.stdout.strip().split(" ", 1)
    assert int(n_cells) > 1000
    assert loaded == "[]", loaded


def test_the_first_projection_is_warmed_on_real_demo_cells():
    from scembed_core.reference import load_default_reference
    from scembed_core.warm import warm_projection

    reference = load_default_reference()
    seconds = warm_projection(reference)
    assert set(seconds) == {"ev_kernels", "reference", "project", "labels", "cluster"}
    assert all(value >= 0 for value in seconds.values())
    assert {"igraph", "numba"} <= set(sys.modules)
    # the reference's own label statistics are computed now, not on the first click
    assert any(key[0] == "unknown_class_stats" for key in reference._memo)


def test_the_warm_up_freezes_what_lives_as_long_as_the_server(monkeypatch):
    """After the background warm-up, the garbage collector's full walk (Streamlit's
    ``gc.collect(2)`` after every run) skips the libraries and the built-in reference, and
    a thread refreezes them every few minutes (scembed_app.memory)."""
    import gc
    import threading

    from scembed_app import quickref, state

    monkeypatch.setattr(state, "WARMUP_DELAY_S", 0.0)
    quickref.start_projection_warmup.clear()
    gc.unfreeze()
    try:
        quickref.start_projection_warmup().join(timeout=300)
        frozen = gc.get_freeze_count()
        assert any(t.name == "scembed-refreeze" for t in threading.enumerate())
        assert frozen > 50_000, frozen  # the imported libraries' objects, at the least
        loose = len(gc.get_objects())  # the objects a full collection still walks
        assert loose < frozen, "most tracked objects are frozen"
    finally:
        gc.unfreeze()
        quickref.start_projection_warmup.clear()
