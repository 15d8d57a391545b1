"""``run.json``: everything needed to re-run an analysis from the command line.

The app's Export page writes one (:func:`build_run_spec`); ``python -m scembed_core project
INPUT --params run.json`` reads it (:func:`read_run_spec`) and takes every parameter from
it, so the command reproduces the app's labels, clusters and map coordinates. The file is
plain JSON::

    {"scembed_version": "0.1.0", "created": "2026-12-02T07:00:00+00:00",
     "reference": {"spec": "default", "name": ..., "genome": ..., "fingerprint": ...,
                   "revision": null},
     "input": {"name": "cells.h5ad", "sha256": ..., "n_cells": 1550},
     "params": {"ev": true, "resolution": 1.0, "n_clusters": null, ...},
     "scoring": {"truth_key": "cell_type", "label_map": {"B": "B cells", ...}},
     "command": "python -m scembed_core project INPUT --params run.json --out OUT.h5ad"}

``scoring`` (optional) is how the app scored the labels: the query's truth column and the
reference -> user label map; the command line scores against them unless
``--truth-key`` is given.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ParameterError

if TYPE_CHECKING:
    from .reference import Reference

__all__ = [
    "PARAM_DEFAULTS",
    "RunSpec",
    "build_run_spec",
    "read_run_spec",
    "file_sha256",
    "run_command",
    "cli_reference",
]

#: Every parameter of a run and its default (those of ``python -m scembed_core project``).
#: ``k_neighbors``: reference neighbours for labels and mapping distance; ``n_neighbors``:
#: neighbours of the query's kNN graph that is clustered.
PARAM_DEFAULTS: dict[str, Any] = {
    "ev": True,
    "resolution": 1.0,
    "n_clusters": None,
    "method": "louvain",
    "k_neighbors": 15,
    "n_neighbors": 15,
    "min_confidence": 0.0,
    "max_mapping_distance": None,
    "unknown_rate": None,
    "label_key": None,
    "label_method": "classifier",
    "seed": 0,
    "query_genome": "auto",
    "liftover": True,
    "layer": None,
}
_CHOICES = {
    "method": ("louvain", "leiden"),
    "label_method": ("classifier", "knn"),
    "query_genome": ("auto", "hg19", "hg38"),
}
#: ``fit`` (the dataset verdict when the run was made) is informational: read, not used;
#: ``qc`` (cells filtered before projection) is applied: the command line drops them
_TOP_LEVEL = {
    "scembed_version", "created", "reference", "input", "params", "command", "fit", "scoring",
    "qc",
}  # fmt: skip
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RunSpec:
    """A validated ``run.json``.

    Attributes
    ----------
    params
        Every key of :data:`PARAM_DEFAULTS` (missing ones filled with the default).
    reference
        ``{"spec", "name", "genome", "fingerprint", "revision"}`` (only ``spec`` required).
    input
        ``{"name", "sha256", "n_cells"}`` (each may be None).
    scembed_version
        Version of scEmbed that wrote the file.
    scoring
        ``{"truth_key": str | None, "label_map": {reference label: user label}}``, or
        empty when the run was not scored.
    qc
        The QC filter applied before projection (``uns["scembed_qc"]`` of
        :func:`scembed_core.qc.filter_cells`: thresholds, counts, ``filtered_cells``), or
        None; the command line drops the same cells.
    """

    params: dict
    reference: dict
    input: dict
    scembed_version: str | None = None
    created: str | None = None
    scoring: dict = field(default_factory=dict)
    qc: dict | None = None

    def to_dict(self) -> dict:
        """Return the JSON document (as :func:`build_run_spec` returns)."""
        doc = {
            "scembed_version": self.scembed_version,
            "created": self.created,
            "reference": dict(self.reference),
            "input": dict(self.input),
            "params": dict(self.params),
            "command": run_command(),
        }
        if self.scoring:
            doc["scoring"] = {
                "truth_key": self.scoring.get("truth_key"),
                "label_map": dict(self.scoring.get("label_map") or {}),
            }
        return doc | ({"qc": dict(self.qc)} if self.qc is not None else {})


def run_command(input_name: str = "INPUT", out: str = "OUT.h5ad") -> str:
    """Return the command line that re-runs a ``run.json``."""
    return f"python -m scembed_core project {input_name} --params run.json --out {out}"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the ``input.sha256`` of a run)."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def build_run_spec(
    *,
    reference_spec: str,
    params: dict,
    reference: Reference | None = None,
    input_name: str | None = None,
    input_sha256: str | None = None,
    n_cells: int | None = None,
    revision: str | None = None,
    created: str | None = None,
    scoring: dict | None = None,
    qc: dict | None = None,
) -> dict:
    """Return the ``run.json`` document of a run (validated, so it reads back as written).

    Parameters
    ----------
    reference_spec
        ``"default"``, ``"hf:OWNER/NAME@REV"``, ``"folder:PATH"`` or ``"session:NAME"``
        (a reference trained in the app; the command line needs its bundle downloaded).
    params
        Run parameters (keys of :data:`PARAM_DEFAULTS`; missing ones take the default).
    reference
        The loaded reference, for its name, genome and fingerprint.
    input_name, input_sha256, n_cells
        The input file's name, the sha256 of its bytes (:func:`file_sha256`) and cells.
    revision
        Hub revision (taken from an ``hf:...@REV`` spec when not given).
    scoring
        ``{"truth_key", "label_map"}``: the truth column and label map the app scored with.
    created
        ISO time stamp (default: now).
    qc
        The QC record of the input (``uns["scembed_qc"]``), when cells were filtered.
    """
    from . import __version__

    if revision is None and str(reference_spec).startswith("hf:"):
        revision = str(reference_spec).partition("@")[2] or None
    doc = {
        "scembed_version": __version__,
        "created": created or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "reference": {
            "spec": str(reference_spec),
            "name": getattr(reference, "name", None),
            "genome": getattr(reference, "genome", None),
            "fingerprint": getattr(reference, "fingerprint", None),
            "revision": revision,
        },
        "input": {"name": input_name, "sha256": input_sha256, "n_cells": n_cells},
        "params": dict(params),
        "command": run_command(),
    }
    if scoring:
        doc["scoring"] = dict(scoring)
    if qc is not None:
        doc["qc"] = _plain_qc(qc)
    return read_run_spec(doc).to_dict() | {"created": doc["created"]}


def read_run_spec(source: str | Path | dict) -> RunSpec:
    """Read and validate a ``run.json`` (a path, or the parsed document).

    Raises
    ------
    ParameterError
        The file cannot be read as JSON, or a key is unknown or has a bad value; the
        message names the key (e.g. ``params.resolution``).
    """
    if isinstance(source, dict):
        doc = source
    else:
        try:
            doc = json.loads(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ParameterError(f"The run file {source} does not exist.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ParameterError(f"The run file {source} is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict):
        raise ParameterError("A run file is a JSON object with 'reference' and 'params'.")
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise ParameterError(f"run.json: unknown key {unknown[0]!r} (known: {sorted(_TOP_LEVEL)}).")
    params = _section(doc, "params", required=True)
    reference = _section(doc, "reference", required=True)
    inputs = _section(doc, "input", required=False)
    checked = dict(PARAM_DEFAULTS)
    for key, value in params.items():
        if key not in PARAM_DEFAULTS:
            raise ParameterError(
                f"run.json: unknown parameter params.{key} (known: {sorted(PARAM_DEFAULTS)})."
            )
        checked[key] = _check_param(key, value)
    if checked["n_clusters"] is not None:
        if params.get("resolution") is not None:
            raise ParameterError(
                "run.json: params.n_clusters and params.resolution are both set; give one "
                "(the other null)."
            )
        checked["resolution"] = None
    ref = {
        "spec": _text(reference, "spec", "reference.spec", required=True),
        "name": _text(reference, "name", "reference.name"),
        "genome": _text(reference, "genome", "reference.genome"),
        "fingerprint": _text(reference, "fingerprint", "reference.fingerprint"),
        "revision": _text(reference, "revision", "reference.revision"),
    }
    sha = _text(inputs, "sha256", "input.sha256")
    if sha is not None and not _SHA256.fullmatch(sha):
        raise ParameterError(f"run.json: input.sha256 must be 64 hex digits, got {sha!r}.")
    n_cells = inputs.get("n_cells")
    if n_cells is not None and (type(n_cells) is not int or n_cells < 0):
        raise ParameterError(f"run.json: input.n_cells must be a whole number, got {n_cells!r}.")
    return RunSpec(
        qc=_check_qc(doc.get("qc")),
        params=checked,
        reference=ref,
        input={"name": _text(inputs, "name", "input.name"), "sha256": sha, "n_cells": n_cells},
        scembed_version=_text(doc, "scembed_version", "scembed_version"),
        created=_text(doc, "created", "created"),
        scoring=_scoring(doc),
    )


def _scoring(doc: dict) -> dict:
    scoring = _section(doc, "scoring", required=False)
    unknown = sorted(set(scoring) - {"truth_key", "label_map"})
    if unknown:
        raise ParameterError(
            f"run.json: unknown key scoring.{unknown[0]} (known: label_map, truth_key)."
        )
    if not scoring:
        return {}
    label_map = scoring.get("label_map") or {}
    if not isinstance(label_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in label_map.items()
    ):
        raise ParameterError("run.json: scoring.label_map must map label names to label names.")
    return {
        "truth_key": _text(scoring, "truth_key", "scoring.truth_key"),
        "label_map": dict(label_map),
    }


def cli_reference(spec: RunSpec) -> str:
    """Return the ``--reference`` value the command line resolves for a run's reference spec."""
    text = spec.reference["spec"]
    if text.startswith("session:"):
        raise ParameterError(
            f"run.json: reference.spec {text!r} is a reference trained in the app, which the "
            "command line cannot load by name. Download the trained bundle from the Train "
            "page, unzip it and pass --reference FOLDER."
        )
    return text.removeprefix("folder:")


def _section(doc: dict, key: str, *, required: bool) -> dict:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ParameterError(f"run.json: {key} must be a JSON object, got {value!r}.")
    return value


def _text(doc: dict, key: str, name: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ParameterError(f"run.json: {name} must be a string, got {value!r}.")
    return value


def _check_param(key: str, value: Any) -> Any:
    name = f"params.{key}"
    if key in ("ev", "liftover"):
        if not isinstance(value, bool):
            raise ParameterError(f"run.json: {name} must be true or false, got {value!r}.")
        return value
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ParameterError(
                f"run.json: {name} must be one of {list(_CHOICES[key])}, got {value!r}."
            )
        return value
    if key in ("label_key", "layer"):
        if value is not None and (not isinstance(value, str) or not value):
            raise ParameterError(f"run.json: {name} must be a column name or null, got {value!r}.")
        return value
    if key in ("k_neighbors", "n_neighbors", "n_clusters", "seed"):
        lowest = {"k_neighbors": 1, "n_neighbors": 2, "n_clusters": 2, "seed": 0}[key]
        if value is None and key == "n_clusters":
            return None
        if type(value) is not int or value < lowest:
            raise ParameterError(
                f"run.json: {name} must be a whole number >= {lowest}, got {value!r}."
            )
        return value
    # resolution, min_confidence, max_mapping_distance, unknown_rate: numbers
    if value is None and key in ("resolution", "max_mapping_distance", "unknown_rate"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"run.json: {name} must be a finite number, got {value!r}.")
    value = float(value)
    if key == "resolution" and value <= 0:
        raise ParameterError(f"run.json: {name} must be > 0, got {value!r}.")
    if key in ("min_confidence", "unknown_rate") and not 0.0 <= value <= 1.0:
        raise ParameterError(f"run.json: {name} must be between 0 and 1, got {value!r}.")
    if key == "max_mapping_distance" and value < 0:
        raise ParameterError(f"run.json: {name} must be >= 0, got {value!r}.")
    return value


def _plain_qc(record: dict) -> dict:
    """Return a QC record (arrays allowed) as plain JSON values."""
    plain = {}
    for key, value in record.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        elif isinstance(value, dict):
            value = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in value.items()}
        plain[str(key)] = value
    return plain


def _check_qc(qc: Any) -> dict | None:
    """Validate ``run.json``'s ``qc`` section (None when absent)."""
    if qc is None:
        return None
    cells = qc.get("filtered_cells") if isinstance(qc, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise ParameterError("run.json: qc.filtered_cells must be a list of cell names.")
    thresholds = qc.get("thresholds", {})
    if not isinstance(thresholds, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in thresholds.values()
    ):
        raise ParameterError("run.json: qc.thresholds must map rule names to numbers.")
    return dict(qc)
