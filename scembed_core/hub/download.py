"""Fetch a hub reference into huggingface_hub's cache (``snapshot_download``), with progress.

Errors of huggingface_hub become the engine's typed errors; ``HF_HUB_OFFLINE`` is re-read at
call time. huggingface_hub is imported inside the functions, so importing this module does
not import it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from .._types import ProgressCallback, ReferenceFormat
from ..errors import (
    HubUnavailableError,
    ModelFormatError,
    ReferenceBundleError,
    UnpinnedRevisionWarning,
    UntrustedSourceError,
)
from ..formats.geniml import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    GENSIM_FILE,
    SAFETENSORS_FILE,
    is_geniml_folder,
)
from .spec import MANIFEST_FILE, parse_hub_spec

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


class HubReference(NamedTuple):
    """A reference fetched from the hub: its local folder and its format."""

    folder: Path
    format: ReferenceFormat


def is_offline() -> bool:
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
    """Make a huggingface_hub tqdm class that forwards the bytes-written bar to ``progress``.

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
        "built-in reference (--reference default).",
        repo_id=repo_id,
        reason=reason,
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

    offline = is_offline()
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


def detect_reference_format(folder: str | Path) -> ReferenceFormat:
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
