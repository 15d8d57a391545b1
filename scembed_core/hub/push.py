"""Upload a reference folder to the hub as one commit (``HfApi.create_commit``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import HubUnavailableError, ParameterError, ReferenceBundleError
from .card import card_for_folder
from .download import detect_reference_format, is_offline
from .spec import HUB_PREFIX, README_FILE, check_repo_id


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
    name = check_repo_id(name, repo_id)
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
    if is_offline():
        raise HubUnavailableError(
            "Cannot push while HF_HUB_OFFLINE is set: unset it and check the network."
        )
    operations = [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
        for p in files
    ]
    if not (folder / README_FILE).is_file():
        card = card_for_folder(folder, fmt, name).encode("utf-8")
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
