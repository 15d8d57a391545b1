"""Archives (``.zip``, tar): checked for traversal, links and bombs before anything is written."""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from ..errors import InputFormatError, UnsafeInputError
from ._detect import PICKLE_SUFFIXES, SUPPORTED_FORMATS, detect_format
from ._files import DECOMPRESS_ERRORS

#: Largest total size an uploaded archive may expand to.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 * 1024**3


#: Largest uncompressed/compressed size ratio accepted for archives above the floor below.
MAX_COMPRESSION_RATIO = 200


_RATIO_FLOOR_BYTES = 64 * 1024**2


_COPY_BLOCK = 1024**2


def _safe_member_path(name: str, archive: str) -> PurePosixPath:
    clean = name.replace("\\", "/")
    member = PurePosixPath(clean)
    drive = len(clean) > 1 and clean[1] == ":"
    if member.is_absolute() or drive or ".." in member.parts:
        raise UnsafeInputError(
            f"{archive} contains the entry {name!r}, which points outside the archive folder "
            "(path traversal). Re-create the archive with relative paths only."
        )
    return member


def _check_bomb(total: int, compressed: int, archive: str, limit: int, max_ratio: float) -> None:
    if total > limit:
        raise UnsafeInputError(
            f"{archive} would expand to {total / 1e9:,.2f} GB uncompressed, more than the "
            f"{limit / 1e9:,.2f} GB allowed (possible decompression bomb). Upload the dataset "
            "itself or a smaller archive."
        )
    if total > _RATIO_FLOOR_BYTES and total > max_ratio * max(compressed, 1):
        raise UnsafeInputError(
            f"{archive} expands {total / max(compressed, 1):,.0f}-fold ({total / 1e6:,.0f} MB "
            f"from {compressed / 1e6:,.2f} MB), more than the {max_ratio:,.0f}-fold allowed: "
            "this looks like a decompression bomb and was not extracted."
        )


class _Budget:
    """Counts bytes actually written while extracting, whatever the headers declare."""

    def __init__(self, limit: int, archive: str) -> None:
        self.left, self.archive, self.limit = limit, archive, limit

    def copy(self, src: IO[bytes], dst: IO[bytes]) -> None:
        while block := src.read(_COPY_BLOCK):
            self.left -= len(block)
            if self.left < 0:
                raise UnsafeInputError(
                    f"{self.archive} expands to more than {self.limit / 1e9:,.2f} GB "
                    "(decompression bomb, or sizes in its headers are wrong)."
                )
            dst.write(block)


def _extract_zip(path: Path, dest: Path, limit: int, max_ratio: float) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputFormatError(
            f"{path.name} is not a valid zip archive (truncated or corrupt: {exc})."
        ) from exc
    with archive:
        infos = archive.infolist()
        for info in infos:
            _safe_member_path(info.filename, path.name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeInputError(
                    f"{path.name} contains the symbolic link {info.filename!r}; links are "
                    "refused because they can point outside the archive."
                )
        _check_bomb(
            sum(i.file_size for i in infos), path.stat().st_size, path.name, limit, max_ratio
        )
        budget = _Budget(limit, path.name)
        try:
            for info in infos:
                target = dest / _safe_member_path(info.filename, path.name)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    budget.copy(src, dst)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, *DECOMPRESS_ERRORS) as exc:
            raise InputFormatError(
                f"{path.name} could not be extracted (truncated or corrupt zip: {exc})."
            ) from exc


def _extract_tar(path: Path, dest: Path, limit: int, max_ratio: float) -> None:
    errors = (tarfile.TarError, *DECOMPRESS_ERRORS)
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
    except errors as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFormatError(
            f"{path.name} is not a valid tar archive (truncated or corrupt: {reason})."
        ) from exc
    compressed = path.stat().st_size
    with archive:
        members: list[tarfile.TarInfo] = []
        total = 0
        try:
            while (member := archive.next()) is not None:
                _safe_member_path(member.name, path.name)
                if member.issym() or member.islnk():
                    raise UnsafeInputError(
                        f"{path.name} contains the link {member.name!r} -> {member.linkname!r}; "
                        "links are refused because they can point outside the archive."
                    )
                if not (member.isfile() or member.isdir()):
                    raise UnsafeInputError(
                        f"{path.name} contains the special file {member.name!r} (device or "
                        "pipe); only plain files and folders are accepted."
                    )
                total += member.size
                _check_bomb(total, compressed, path.name, limit, max_ratio)
                members.append(member)
            budget = _Budget(limit, path.name)
            for member in members:
                target = dest / _safe_member_path(member.name, path.name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = archive.extractfile(member)
                if src is None:
                    continue
                with src, open(target, "wb") as dst:
                    budget.copy(src, dst)
        except errors as exc:
            raise InputFormatError(
                f"{path.name} could not be extracted (truncated or corrupt tar: {exc})."
            ) from exc


def _find_dataset(root: Path, archive: str) -> Path:
    """Return the single dataset inside an extracted archive (a file or a 10x folder)."""
    visible = [
        p
        for p in sorted(root.rglob("*"))
        if not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts)
    ]
    mtx_dirs = {p.parent for p in visible if p.is_file() and ".mtx" in p.name.lower()}
    found: list[Path] = sorted(mtx_dirs)
    for p in visible:
        if not p.is_file() or p.parent in mtx_dirs:
            continue
        name = p.name.lower()
        if name.endswith(PICKLE_SUFFIXES):
            continue
        data_suffix = name.endswith((".h5ad", ".h5", ".hdf5", ".csv", ".csv.gz", ".tsv", ".tsv.gz"))
        fragments = "fragments" in name and not name.endswith((".tbi", ".csi"))
        if data_suffix or fragments:
            found.append(p)
    if not found:
        raise InputFormatError(
            f"{archive} holds no supported dataset (found {[p.name for p in visible][:10]}). "
            f"Supported: {'; '.join(SUPPORTED_FORMATS[:-1])}."
        )
    if len(found) > 1:
        raise InputFormatError(
            f"{archive} holds several datasets ({[str(p.relative_to(root)) for p in found][:6]}); "
            "upload one at a time."
        )
    return found[0]


def extract_archive(
    path: str | Path,
    dest: str | Path,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
    max_ratio: float = MAX_COMPRESSION_RATIO,
) -> Path:
    """Safely extract a ``.zip`` or tar archive and return the dataset it holds.

    Before anything is written, every entry is checked: absolute paths, ``..`` components,
    symbolic/hard links and special files are refused, and so are archives whose declared
    uncompressed size exceeds ``max_uncompressed_bytes`` or ``max_ratio`` times the archive's
    size (above 64 MiB). The bytes actually written are counted too, so lying headers do not
    help a decompression bomb.

    Returns
    -------
    Path
        The one dataset inside ``dest``: a file, or a folder holding a 10x ``matrix.mtx``.

    Raises
    ------
    UnsafeInputError
        Path traversal, links, special files or a decompression bomb.
    InputFormatError
        A corrupt archive, or one holding no dataset or several.
    """
    path, dest = Path(path), Path(dest)
    kind = detect_format(path)
    if kind == "zip":
        _extract_zip(path, dest, max_uncompressed_bytes, max_ratio)
    elif kind == "tar":
        _extract_tar(path, dest, max_uncompressed_bytes, max_ratio)
    else:
        raise InputFormatError(f"{path.name} is not a .zip or tar archive.")
    return _find_dataset(dest, path.name)
