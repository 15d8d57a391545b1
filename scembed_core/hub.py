"""The Hugging Face hub: the only module of the engine that touches the network.

A hub reference is written ``hf:OWNER/NAME`` or, pinned to a commit, tag or branch,
``hf:OWNER/NAME@REVISION``. :func:`fetch_hub_model` downloads the files a reference needs
into huggingface_hub's standard cache and returns the local snapshot folder; everything
downstream takes that folder. huggingface_hub itself honours ``HF_HUB_OFFLINE``,
``HF_HUB_CACHE``/``HF_HOME`` and ``HF_TOKEN``; ``HF_HUB_OFFLINE`` is also re-read at call
time so setting it after import works. huggingface_hub is imported lazily, so importing
the engine never imports it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .errors import (
    HubUnavailableError,
    ModelFormatError,
    ParameterError,
    ReferenceBundleError,
    UnpinnedRevisionWarning,
    UntrustedSourceError,
)
from .formats.geniml import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    GENSIM_FILE,
    SAFETENSORS_FILE,
    is_geniml_folder,
)

__all__ = [
    "KNOWN_HUB_MODELS",
    "HubReference",
    "detect_reference_format",
    "fetch_hub_model",
    "load_hub_reference",
    "parse_hub_spec",
    "push_bundle",
    "render_model_card",
]

ProgressCallback = Callable[[float, str], None]

HUB_PREFIX = "hf:"
MANIFEST_FILE = "manifest.json"
README_FILE = "README.md"

#: Files fetched for any reference. Torch checkpoints are fetched in a second pass, only
#: when the repository has no ``model.safetensors`` twin (they are the same numbers).
FETCH_PATTERNS = (
    "*.json",
    "*.yaml",
    "*.yml",
    "*.toml",
    "*.md",
    "*.txt",
    "*.bed",
    "*.bed.gz",
    "*.safetensors",
    "*.npy",
    "*.npz",
    "*.parquet",
    "*.csv",
    "*.tsv",
    "*.bin",
    "*.pkl",
)

#: scEmbed models published by the geniml authors (databio) on the hub. Repository names
#: are from the hub's model list; none is pinned here, so pin a revision when you use one.
KNOWN_HUB_MODELS: tuple[dict[str, str], ...] = (
    {
        "repo_id": "databio/r2v-luecken2021-hg38-v2",
        "genome": "hg38",
        "description": "Luecken 2021 bone-marrow multiome (~120k cells); 116,492 regions, "
        "100 dimensions; has model.safetensors. The geniml tutorials' reference.",
    },
    {
        "repo_id": "databio/r2v-buenrostro2018-hg19",
        "genome": "hg19",
        "description": "Buenrostro 2018 human hematopoiesis scATAC-seq, the paper's "
        "benchmark and projection reference.",
    },
    {
        "repo_id": "databio/r2v-10x-pbmc-5k-hg19",
        "genome": "hg19",
        "description": "10x Genomics PBMC 5k scATAC-seq (the paper's projection query).",
    },
    {
        "repo_id": "databio/r2v-scatlas-hg38-v2",
        "genome": "hg38",
        "description": "Single-cell ATAC atlas region2vec model.",
    },
    {
        "repo_id": "databio/r2v-mouse-atlas-mm9-v2",
        "genome": "mm9",
        "description": "Mouse scATAC atlas region2vec model.",
    },
)

_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SPEC_EXAMPLE = "'hf:databio/r2v-luecken2021-hg38-v2' or 'hf:owner/name@<commit>'"


class HubReference(NamedTuple):
    """A reference fetched from the hub: its local folder and its format."""

    folder: Path
    format: str  # "scembed-bundle" or "geniml"


def _check_repo_id(repo_id: str, original: str) -> str:
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ParameterError(
            f"{original!r} does not name a Hugging Face repository: expected OWNER/NAME made of "
            f"letters, digits, '-', '_' and '.', e.g. {_SPEC_EXAMPLE}."
        )
    return repo_id


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """Split a hub reference ``hf:OWNER/NAME[@REVISION]``.

    Parameters
    ----------
    spec
        The reference, e.g. ``hf:databio/r2v-luecken2021-hg38-v2@main``.

    Returns
    -------
    tuple
        ``(repo_id, revision)``; ``revision`` is ``None`` when none is given.

    Raises
    ------
    ParameterError
        The text is not of that form.
    """
    if not isinstance(spec, str) or not spec.strip().startswith(HUB_PREFIX):
        raise ParameterError(f"Expected a hub reference like {_SPEC_EXAMPLE}, got {spec!r}.")
    body = spec.strip()[len(HUB_PREFIX) :]
    repo_id, at, revision = body.partition("@")
    _check_repo_id(repo_id, spec)
    if not at:
        return repo_id, None
    if not _REVISION.match(revision) or ".." in revision:
        raise ParameterError(
            f"{spec!r} has an invalid revision {revision!r}: expected a commit hash, tag or "
            "branch name after '@'."
        )
    return repo_id, revision


def _offline() -> bool:
    """Offline mode, from huggingface_hub's constant or the environment as it is now."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.is_offline_mode() or env in {"1", "ON", "YES", "TRUE"}


def _report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


#: The ``name`` huggingface_hub gives snapshot_download's bar of bytes written to the cache.
_SNAPSHOT_BYTES_BAR = "huggingface_hub.snapshot_download"


def _progress_tqdm_class(progress: ProgressCallback, repo_id: str) -> type:
    """A huggingface_hub tqdm class that forwards the bytes-written bar to ``progress``.

    The bar is recognised by the ``name`` huggingface_hub passes, not by its text. Its total
    grows as each file starts downloading, so the fraction reported never goes back.
    """
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _ProgressTqdm(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._scembed_forward = kwargs.get("name") == _SNAPSHOT_BYTES_BAR
            self._scembed_done = kwargs.get("initial", 0) or 0
            self._scembed_fraction = 0.0
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            result = super().update(n)
            self._scembed_done += n or 0
            total = getattr(self, "total", None) or 0
            if self._scembed_forward and total > 0:
                fraction = min(max(self._scembed_done / total, self._scembed_fraction), 1.0)
                self._scembed_fraction = fraction
                progress(
                    0.02 + 0.96 * fraction,
                    f"Downloading {repo_id}: {self._scembed_done / 1e6:.1f} of "
                    f"{total / 1e6:.1f} MB",
                )
            return result

    return _ProgressTqdm


def _unavailable(repo_id: str, reason: str, cache: str) -> HubUnavailableError:
    return HubUnavailableError(
        f"The Hugging Face hub could not be reached for {repo_id} ({reason}) and its files "
        f"are not in the local cache ({cache}). Use a model already in the local cache (fetch "
        "it once with network access), a local folder (--reference path/to/folder) or the "
        "built-in reference (--reference default)."
    )


def _snapshot(
    repo_id: str,
    revision: str | None,
    patterns: list[str],
    *,
    token: str | None,
    cache_dir: str | Path | None,
    progress: ProgressCallback | None,
) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        from httpx2 import TransportError  # huggingface_hub's HTTP client
    except ImportError:  # pragma: no cover - another huggingface_hub release
        TransportError = OSError

    offline = _offline()
    cache = str(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "cache_dir": cache_dir,
        "allow_patterns": patterns,
        "local_files_only": offline,
    }
    if token:
        kwargs["token"] = token
    if progress is not None:
        kwargs["tqdm_class"] = _progress_tqdm_class(progress, repo_id)
    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except GatedRepoError as exc:
        raise ReferenceBundleError(
            f"{repo_id} is a gated repository: accept its terms on the hub, then set HF_TOKEN "
            "(or pass a token) for an account that has access."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ReferenceBundleError(
            f"No Hugging Face repository {repo_id} was found (or it is private). Check the "
            "name, or set HF_TOKEN for an account that can see it."
        ) from exc
    except RevisionNotFoundError as exc:
        raise ReferenceBundleError(
            f"{repo_id} has no revision {revision!r}. Use a commit hash, tag or branch that "
            "exists in the repository."
        ) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise ReferenceBundleError(
                f"Access to {repo_id} was denied (HTTP {status}). Set HF_TOKEN (or pass a "
                "token) for an account that can read it."
            ) from exc
        raise _unavailable(
            repo_id, f"HTTP {status}" if status else type(exc).__name__, cache
        ) from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, TransportError, OSError) as exc:
        # OSError also covers connection errors and timeouts raised as such.
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else type(exc).__name__
        raise _unavailable(repo_id, reason, cache) from exc


def fetch_hub_model(
    spec: str,
    *,
    progress: ProgressCallback | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Download (or find in the local cache) the files of a hub reference.

    With :func:`push_bundle`, the only code of the engine that reaches the network.

    Parameters
    ----------
    spec
        ``hf:OWNER/NAME`` or ``hf:OWNER/NAME@REVISION``. Pin a commit hash for results that
        do not change when the repository does.
    progress
        Optional callback ``progress(fraction, message)``.
    token
        Hugging Face access token for private or gated repositories; when ``None``,
        huggingface_hub uses ``HF_TOKEN`` or a stored login.
    cache_dir
        Cache folder; default: huggingface_hub's (``HF_HUB_CACHE``, under ``HF_HOME``).

    Returns
    -------
    Path
        The local snapshot folder (inside the cache; treat it as read-only).

    Raises
    ------
    ParameterError
        ``spec`` is not a hub reference.
    HubUnavailableError
        The hub cannot be reached (or ``HF_HUB_OFFLINE`` is set) and the files are not cached.
    ReferenceBundleError
        The repository or revision does not exist, or access to it is denied.

    Warns
    -----
    UnpinnedRevisionWarning
        No revision was given, so the newest files of the default branch are used.
    """
    repo_id, revision = parse_hub_spec(spec)
    if revision is None:
        warnings.warn(
            UnpinnedRevisionWarning(
                f"No revision pinned for {repo_id}: using the newest files of its default "
                f"branch, which may change. Pin one with hf:{repo_id}@<commit>."
            ),
            stacklevel=2,
        )
    _report(progress, 0.0, f"Fetching {repo_id} from the Hugging Face hub")
    options = {"token": token, "cache_dir": cache_dir, "progress": progress}
    folder = _snapshot(repo_id, revision, list(FETCH_PATTERNS), **options)
    if not (folder / SAFETENSORS_FILE).is_file() and not (folder / MANIFEST_FILE).is_file():
        folder = _snapshot(repo_id, revision, [CHECKPOINT_FILE], **options)
    _report(progress, 1.0, f"{repo_id} is in the local cache")
    return folder


def detect_reference_format(folder: str | Path) -> str:
    """Tell which kind of reference a local folder holds.

    Parameters
    ----------
    folder
        A local folder, e.g. the one :func:`fetch_hub_model` returns.

    Returns
    -------
    str
        ``"scembed-bundle"`` when it has ``manifest.json``, ``"geniml"`` when it is a geniml
        model folder (see :func:`~scembed_core.formats.geniml.is_geniml_folder`).

    Raises
    ------
    ModelFormatError
        The folder is neither.
    """
    folder = Path(folder)
    if (folder / MANIFEST_FILE).is_file():
        return "scembed-bundle"
    if is_geniml_folder(folder):
        return "geniml"
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) if folder.is_dir() else ""
    raise ModelFormatError(
        f"{folder} is not a reference: expected {MANIFEST_FILE} (an scEmbed bundle) or "
        f"{CONFIG_FILE} with universe.bed and {SAFETENSORS_FILE} or {CHECKPOINT_FILE} (a geniml "
        f"model); found {found or 'no files'}."
    )


def load_hub_reference(
    spec: str,
    *,
    trust: bool = False,
    progress: ProgressCallback | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> HubReference:
    """Fetch a hub reference and tell which loader reads it.

    Parameters
    ----------
    spec
        ``hf:OWNER/NAME[@REVISION]``.
    trust
        Whether the caller trusts the source with pickled files. A geniml repository whose
        only weights are a gensim pickle (``model.bin``) is refused without it.
    progress
        Optional callback ``progress(fraction, message)``.
    token
        Hugging Face access token (default: ``HF_TOKEN`` or a stored login).
    cache_dir
        Cache folder (default: huggingface_hub's).

    Returns
    -------
    HubReference
        ``(folder, format)`` with format ``"scembed-bundle"`` or ``"geniml"``.

    Raises
    ------
    ModelFormatError
        The repository holds neither kind of reference.
    UntrustedSourceError
        Reading it would unpickle a file and ``trust`` is ``False``.
    """
    folder = fetch_hub_model(spec, progress=progress, token=token, cache_dir=cache_dir)
    fmt = detect_reference_format(folder)
    weights = (SAFETENSORS_FILE, CHECKPOINT_FILE)
    if fmt == "geniml" and not trust and not any((folder / w).is_file() for w in weights):
        raise UntrustedSourceError(
            f"{spec} only has a gensim {GENSIM_FILE}, a Python pickle that can run arbitrary "
            "code when loaded. Load it only if you trust where it came from: pass --trust on "
            'the command line or tick "I trust this source" in the app.'
        )
    return HubReference(folder, fmt)


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


def render_model_card(manifest: dict, *, repo_id: str | None = None) -> str:
    """Write a hub model card (``README.md``) for a reference from its manifest.

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
    str
        Markdown with a YAML front matter block (``library_name``, ``tags``, ``license``).
    """
    import yaml

    if not isinstance(manifest, dict):
        raise ParameterError(f"A manifest must be a dict, got {type(manifest).__name__}.")
    genome = _first(manifest, "genome", "genome_build", "assembly")
    tags = ["scembed", "region2vec", "scATAC-seq", "single-cell"]
    if genome and str(genome) != "unknown":
        tags.append(str(genome))
    front: dict[str, Any] = {"library_name": "scembed", "tags": tags}
    license_ = _first(manifest, "license")
    if license_:
        front["license"] = str(license_)

    name = _first(manifest, "name", "title") or repo_id or "scEmbed reference"
    description = _first(manifest, "description") or (
        "An scEmbed reference: pretrained region embeddings for mapping, clustering and "
        "annotating scATAC-seq cells."
    )
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    lines += [f"# {_cell(name)}", "", str(description), ""]

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
    return "\n".join(lines)


def _card_for_folder(folder: Path, fmt: str, repo_id: str) -> str:
    if fmt == "scembed-bundle":
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{MANIFEST_FILE} in {folder} is not valid JSON: {exc}") from exc
        return render_model_card(manifest, repo_id=repo_id)
    import yaml

    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError):
        config = {}
    manifest = {"format": "geniml (config.yaml, universe.bed, weights)"}
    if isinstance(config, dict):
        manifest["vocab_size"] = config.get("vocab_size")
        manifest["embedding_dim"] = config.get("embedding_dim", config.get("embedding_size"))
        manifest["pooling"] = config.get("pooling_method")
    return render_model_card(manifest, repo_id=repo_id)


def push_bundle(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Upload a reference folder to the hub as one commit, with a generated model card.

    Parameters
    ----------
    folder
        An scEmbed bundle (with ``manifest.json``) or a geniml model folder. Hidden files are
        skipped; symbolic links are refused. A ``README.md`` in the folder is kept, otherwise
        one is generated with :func:`render_model_card`.
    repo_id
        ``OWNER/NAME`` (an ``hf:`` prefix is accepted); created if it does not exist.
    token
        Token with write access; default ``HF_TOKEN`` or a stored login.
    private
        Create the repository as private (has no effect on an existing one).
    commit_message
        Message of the upload commit.

    Returns
    -------
    str
        The URL of the new commit.

    Raises
    ------
    ParameterError
        Bad folder or repository name, or no token available.
    ModelFormatError
        The folder is not a reference.
    HubUnavailableError
        Offline mode is on or the hub cannot be reached.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError(f"{folder} is not a folder; push_bundle uploads a reference folder.")
    name = repo_id[len(HUB_PREFIX) :] if repo_id.startswith(HUB_PREFIX) else repo_id
    if "@" in name:
        raise ParameterError(f"Push to a repository (OWNER/NAME), not a revision: got {repo_id!r}.")
    name = _check_repo_id(name, repo_id)
    fmt = detect_reference_format(folder)
    files = sorted(p for p in folder.rglob("*") if not p.is_dir())
    files = [
        p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    root = folder.resolve()
    links = [p.name for p in files if p.is_symlink() or not p.resolve().is_relative_to(root)]
    if links:
        raise ParameterError(
            f"{folder} contains symbolic links ({', '.join(links[:3])}); copy the real files in."
        )

    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if not token and not get_token():
        raise ParameterError(
            "Pushing to the hub needs a Hugging Face token with write access: set HF_TOKEN, "
            "log in with `hf auth login`, or pass token=."
        )
    if _offline():
        raise HubUnavailableError(
            "Cannot push while HF_HUB_OFFLINE is set: unset it and check the network."
        )
    operations = [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
        for p in files
    ]
    if not (folder / README_FILE).is_file():
        card = _card_for_folder(folder, fmt, name).encode("utf-8")
        operations.append(CommitOperationAdd(path_in_repo=README_FILE, path_or_fileobj=card))
    api = HfApi(token=token) if token else HfApi()
    try:
        api.create_repo(name, private=private, exist_ok=True, repo_type="model")
        info = api.create_commit(
            name,
            operations=operations,
            commit_message=commit_message or f"Upload scEmbed reference ({fmt})",
            repo_type="model",
        )
    except HfHubHTTPError as exc:
        raise ReferenceBundleError(f"The hub refused the upload to {name}: {exc}") from exc
    except OSError as exc:
        raise HubUnavailableError(
            f"The Hugging Face hub could not be reached to push {name} ({type(exc).__name__})."
        ) from exc
    return str(info.commit_url)
