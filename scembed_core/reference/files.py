"""A reference folder is a closed world: every file it names is a plain name inside it.

Names come from ``manifest.json``, ``config.yaml`` or a model card, i.e. from whoever
published the folder. Each is checked before anything is opened: a plain relative name (no
separator, no ``..``, no NUL, not absolute) whose real path, links followed, stays inside
the folder. A Hugging Face cache snapshot (``snapshots/<commit>/``) links its files to
``../../blobs/``; there the repository's cache folder is the boundary. A name that fails gives
one refusal, the same whether the file outside exists or not, and nothing outside is read or
hashed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ReferenceBundleError

__all__ = ["bundle_file", "link_root", "plain_name"]

_MAX_NAME = 255


def _shown(name: object) -> str:
    text = repr(name) if not isinstance(name, str) else repr(name[:60])
    return text[:80]


def plain_name(name: object, *, what: str = "manifest.json") -> str:
    r"""Check that ``name`` is a plain file name (no folder part) and return it.

    Parameters
    ----------
    name
        A name read from a bundle's own files.
    what
        The file that listed it, for the message.

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    ReferenceBundleError
        ``name`` is not a string, is empty or too long, holds ``/``, ``\\`` or NUL, or is
        ``.``/``..``.
    """
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= _MAX_NAME
        and not any(ch in name for ch in ("/", "\\", "\0"))
        and name not in (".", "..")
        and not (len(name) > 1 and name[1] == ":")  # a Windows drive
    )
    if not ok:
        raise ReferenceBundleError(
            f"{what} lists {_shown(name)}, which is not a plain file name inside the bundle. "
            "A bundle only names its own files; it was refused without opening anything."
        )
    return name


def link_root(folder: Path) -> Path:
    """Return the folder a bundle's files (links followed) must stay in.

    Parameters
    ----------
    folder
        The bundle or model folder.

    Returns
    -------
    Path
        ``folder`` itself (resolved), or for a Hugging Face cache snapshot
        (``<repo>/snapshots/<commit>`` beside ``<repo>/blobs``) the repository's cache folder,
        whose ``blobs`` the snapshot links to.
    """
    real = Path(os.path.realpath(folder))
    repo = real.parent.parent
    if real.parent.name == "snapshots" and (repo / "blobs").is_dir():
        return repo
    return real


def bundle_file(folder: Path, name: object, *, what: str = "manifest.json") -> Path:
    """Return the path of file ``name`` of a bundle, refused if it is not inside it.

    Parameters
    ----------
    folder
        The bundle folder.
    name
        A file name listed by the bundle itself.
    what
        The file that listed it, for the message.

    Returns
    -------
    Path
        ``folder / name`` (not resolved; it may not exist).

    Raises
    ------
    ReferenceBundleError
        The name is not plain (see :func:`plain_name`), or a link takes it outside
        :func:`link_root`. The message is the same whether the outside file exists or not.
    """
    path = Path(folder) / plain_name(name, what=what)
    root = str(link_root(Path(folder)))
    real = os.path.realpath(path)
    if not real.startswith(root.rstrip(os.sep) + os.sep):
        raise ReferenceBundleError(
            f"{what} lists {_shown(name)}, which is a link to a file outside the bundle. "
            "A bundle only names its own files; it was refused without opening anything."
        )
    return path
