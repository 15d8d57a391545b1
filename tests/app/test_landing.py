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
