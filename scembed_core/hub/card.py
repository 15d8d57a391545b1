"""The hub model card (``README.md``) of a reference, built on huggingface_hub's ``ModelCard``.

The YAML metadata is a :class:`huggingface_hub.ModelCardData` (``library_name``, ``tags``,
``license``) and the document a :class:`huggingface_hub.ModelCard`; the Markdown body
(summary, labels, training parameters, quality metrics, usage, file checksums) is written
from the bundle's manifest here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelFormatError, ParameterError
from ..formats.geniml import CONFIG_FILE
from .spec import MANIFEST_FILE

if TYPE_CHECKING:
    from huggingface_hub import ModelCard


def _cell(value: Any) -> str:
    """A value as one Markdown table cell."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _first(manifest: dict, *keys: str) -> Any:
    return next((manifest[k] for k in keys if manifest.get(k) not in (None, "", [], {})), None)


def _table(header: tuple[str, str], rows: list[tuple[Any, Any]]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    return lines + [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]


def _flatten(values: dict, prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def _label_section(manifest: dict) -> list[str]:
    """Label tables: ``label_counts`` is ``{column: {label: n}}`` or ``{label: n}``."""
    labels = _first(manifest, "label_counts", "labels", "cell_types")
    columns = _first(manifest, "label_keys", "label_columns", "label_column", "label_key")
    if not labels and not columns:
        return []
    lines = ["## Cell-type labels", ""]
    if columns:
        names = columns if isinstance(columns, list | tuple) else [columns]
        lines += [
            "Label columns of the reference cells: "
            + ", ".join(f"`{_cell(c)}`" for c in names)
            + ".",
            "",
        ]
    if isinstance(labels, dict) and labels and all(isinstance(v, dict) for v in labels.values()):
        for column, counts in labels.items():
            lines += [
                f"### {_cell(column)}",
                "",
                *_table(("Label", "Cells"), list(counts.items())),
                "",
            ]
    elif isinstance(labels, dict) and labels:
        lines += [*_table(("Label", "Cells"), list(labels.items())), ""]
    elif labels:
        lines += [", ".join(_cell(x) for x in labels), ""]
    return lines


def model_card(manifest: dict, *, repo_id: str | None = None) -> ModelCard:
    """The hub model card of a reference, from its manifest.

    Parameters
    ----------
    manifest
        The bundle's ``manifest.json`` as a dict. Read when present: ``name``,
        ``description``, ``genome``, ``source`` (or ``data_source``), ``n_cells``,
        ``n_regions``, ``embedding_dim``, ``pooling``, ``label_keys``, ``label_counts``
        (``{column: {label: n_cells}}`` or ``{label: n_cells}``; also ``labels``),
        ``training`` (or ``parameters``), ``training_stats``, ``metrics``,
        ``mapping_distance_q50``/``q99``, ``license``, ``files`` and the version fields.
        Missing fields are left out.
    repo_id
        The repository the card is for, used in the usage line.

    Returns
    -------
    huggingface_hub.ModelCard
        ``card.data`` is a :class:`~huggingface_hub.ModelCardData` with ``library_name``
        ``"scembed"``, ``tags`` (with the genome build) and ``license`` when the manifest has
        one; ``card.text`` is the Markdown body; ``str(card)`` is the ``README.md``.

    Raises
    ------
    ParameterError
        ``manifest`` is not a dict.
    """
    from huggingface_hub import ModelCard, ModelCardData

    if not isinstance(manifest, dict):
        raise ParameterError(f"A manifest must be a dict, got {type(manifest).__name__}.")
    genome = _first(manifest, "genome", "genome_build", "assembly")
    tags = ["scembed", "region2vec", "scATAC-seq", "single-cell"]
    if genome and str(genome) != "unknown":
        tags.append(str(genome))
    license_ = _first(manifest, "license")
    data = ModelCardData(
        library_name="scembed", tags=tags, license=str(license_) if license_ else None
    )

    name = _first(manifest, "name", "title") or repo_id or "scEmbed reference"
    description = _first(manifest, "description") or (
        "An scEmbed reference: pretrained region embeddings for mapping, clustering and "
        "annotating scATAC-seq cells."
    )
    lines = ["", f"# {_cell(name)}", "", str(description), ""]

    facts = [
        ("Genome", genome),
        ("Data source", _first(manifest, "source", "data_source", "dataset", "training_data")),
        ("Reference cells", _first(manifest, "n_cells", "n_reference_cells")),
        ("Universe regions", _first(manifest, "n_regions", "universe_size", "vocab_size")),
        ("Embedding dimension", _first(manifest, "embedding_dim", "vector_size")),
        ("Pooling", _first(manifest, "pooling", "pooling_method")),
        ("Format", _first(manifest, "format")),
        ("Schema version", _first(manifest, "schema_version")),
        ("scembed_core version", _first(manifest, "library_version", "scembed_core_version")),
    ]
    facts = [(k, v) for k, v in facts if v is not None]
    if facts:
        lines += ["## Summary", "", *_table(("Field", "Value"), facts), ""]
    lines += _label_section(manifest)

    params = _first(manifest, "training", "parameters", "training_parameters", "params")
    if isinstance(params, dict):
        lines += ["## Training parameters", "", *_table(("Parameter", "Value"), _flatten(params))]
        lines.append("")
    metrics: list[tuple[str, Any]] = []
    for key in ("metrics", "quality", "training_stats"):
        if isinstance(manifest.get(key), dict):
            metrics += _flatten(manifest[key])
    metrics += [(k, v) for k, v in manifest.items() if k.startswith("mapping_distance_")]
    if metrics:
        lines += ["## Quality metrics", "", *_table(("Metric", "Value"), metrics), ""]

    spec = f"hf:{repo_id}" if repo_id else "hf:OWNER/NAME"
    lines += [
        "## Usage",
        "",
        "Load it in the scEmbed dashboard (Reference page) or on the command line with",
        f"`--reference {spec}@<commit>`; pinning a commit keeps results reproducible.",
        "",
    ]
    files = manifest.get("files")
    if isinstance(files, dict) and files:
        rows = [(k, v.get("sha256", v) if isinstance(v, dict) else v) for k, v in files.items()]
        lines += ["## Files", "", *_table(("File", "sha256"), sorted(rows)), ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines))


def render_model_card(manifest: dict, *, repo_id: str | None = None) -> str:
    """The ``README.md`` text of :func:`model_card`: YAML metadata, then the Markdown body.

    Raises
    ------
    ParameterError
        ``manifest`` is not a dict.
    """
    return str(model_card(manifest, repo_id=repo_id))


def card_for_folder(folder: Path, fmt: str, repo_id: str) -> str:
    """The ``README.md`` for a reference folder: from its manifest, or a geniml config.

    Raises
    ------
    ModelFormatError
        A bundle's ``manifest.json`` is not valid JSON.
    """
    if fmt == "scembed-bundle":
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{MANIFEST_FILE} in {folder} is not valid JSON: {exc}") from exc
        return render_model_card(manifest, repo_id=repo_id)
    from ..formats.geniml import load_yaml_data

    try:
        config = load_yaml_data((folder / CONFIG_FILE).read_text(encoding="utf-8"), CONFIG_FILE)
    except (OSError, ValueError, ModelFormatError):
        config = {}
    manifest = {"format": "geniml (config.yaml, universe.bed, weights)"}
    if isinstance(config, dict):
        manifest["vocab_size"] = config.get("vocab_size")
        manifest["embedding_dim"] = config.get("embedding_dim", config.get("embedding_size"))
        manifest["pooling"] = config.get("pooling_method")
    return render_model_card(manifest, repo_id=repo_id)
