"""The Export page's ``run.json``: the app's settings as a command-line run (no Streamlit).

:func:`run_params` maps a tab's settings to the parameters of ``python -m scembed_core
project`` (:data:`scembed_core.runspec.PARAM_DEFAULTS`) by the same rules the app computes
with, and :func:`run_spec` builds the validated document with
:func:`scembed_core.runspec.build_run_spec`. ``tests/app/test_reproduce.py`` runs the command
and compares its results with the app's.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from scembed_app import state
from scembed_app.uploads import LoadedDataset

__all__ = ["LABEL_K", "run_params", "input_name", "reference_spec", "run_spec", "command_line"]

#: Reference neighbours used for labels and the mapping distance (``results.labels``'s k).
LABEL_K = 15


def run_params(
    *,
    ev: bool,
    resolution: float,
    label_key: str | None,
    label_method: str,
    min_confidence: float,
    max_mapping_distance: float | None,
    liftover: bool,
    unknown_rate: float | None = None,
) -> dict:
    """The command line's parameters for the app's settings (every seed the app uses is 0).

    ``unknown_rate`` is the Annotation page's Unknown strictness (None: the reference's
    calibrated rate, as the command line's default).
    """
    return {
        "ev": bool(ev),
        "resolution": float(resolution),
        "n_clusters": None,  # the app's "find resolution" sets the resolution itself
        "method": "louvain",
        "k_neighbors": LABEL_K,
        "n_neighbors": state.N_NEIGHBORS,
        "min_confidence": float(min_confidence),
        "max_mapping_distance": None
        if max_mapping_distance is None
        else float(max_mapping_distance),
        "unknown_rate": None if unknown_rate is None else float(unknown_rate),
        "label_key": label_key,
        "label_method": label_method,
        "seed": 0,
        "query_genome": "auto",  # the command line detects the build as the Data page does
        "liftover": bool(liftover),
        "layer": None,
    }


def input_name(dataset: LoadedDataset) -> str:
    """The file name to put in the command line (the demo's file for the demo)."""
    first = dataset.name.removeprefix("demo: ").split(" + ")[0]
    return PurePath(first).name or "INPUT"


def reference_spec(spec: str, *, hosted: bool) -> str:
    """``run.json``'s reference spec; a server folder is named, never shown, when hosted."""
    if spec == "default" or spec.startswith(("hf:", "session:")):
        return spec
    return f"folder:{PurePath(spec).name if hosted else spec}"


def run_spec(
    *,
    spec: str,
    reference: Any,
    dataset: LoadedDataset,
    params: dict,
    hosted: bool,
    scoring: dict | None = None,
) -> dict:
    """The ``run.json`` document of this tab's analysis (``scoring``: truth column, map)."""
    from scembed_core.runspec import build_run_spec

    return build_run_spec(
        reference_spec=reference_spec(spec, hosted=hosted),
        params=params,
        reference=reference,
        input_name=input_name(dataset),
        input_sha256=dataset.sha256,
        n_cells=int(dataset.adata.n_obs),
        scoring=scoring,
        qc=dataset.adata.uns.get("scembed_qc"),  # cells filtered before projection
    )


def command_line(dataset: LoadedDataset, spec: str) -> str:
    """The exact command that re-runs ``run.json`` on the input file."""
    from scembed_core.runspec import run_command

    name = input_name(dataset)
    out = f"{PurePath(name).name.split('.')[0] or 'scembed'}_scembed.h5ad"
    command = run_command(name, out)
    if spec.startswith("session:"):
        command += f" --reference {spec.removeprefix('session:')}"
    return command
