"""The ``hf:OWNER/NAME[@REVISION]`` grammar of hub references and the files a reference has."""

from __future__ import annotations

import re

from ..errors import ParameterError

HUB_PREFIX = "hf:"


MANIFEST_FILE = "manifest.json"


README_FILE = "README.md"


_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"


_REPO_ID = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")


_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}$")


_SPEC_EXAMPLE = "'hf:databio/r2v-luecken2021-hg38-v2' or 'hf:owner/name@<commit>'"


def check_repo_id(repo_id: str, original: str) -> str:
    """``repo_id`` if it is a valid OWNER/NAME, else :class:`ParameterError` quoting ``original``."""
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
    check_repo_id(repo_id, spec)
    if not at:
        return repo_id, None
    if not _REVISION.match(revision) or ".." in revision:
        raise ParameterError(
            f"{spec!r} has an invalid revision {revision!r}: expected a commit hash, tag or "
            "branch name after '@'."
        )
    return repo_id, revision
