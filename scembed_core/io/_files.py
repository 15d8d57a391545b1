"""Low-level file helpers shared by the readers: gzip sniffing, text opening, column files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

import pandas as pd

from ..errors import InputFormatError, TextEncodingError

GZIP_MAGIC = b"\x1f\x8b"
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def not_utf8(source: str, exc: UnicodeDecodeError) -> TextEncodingError:
    """Build the error for a text file that is not UTF-8 (raise it ``from exc``)."""
    data = exc.object if isinstance(exc.object, bytes) else b""
    before = data[max(exc.start - 12, 0) : exc.start].decode("utf-8", "replace")
    after = data[exc.start + 1 : exc.start + 13].decode("utf-8", "replace")
    near = (before.splitlines() or [""])[-1] + "?" + (after.splitlines() or [""])[0]
    where = f" in {near.replace(chr(0xFFFD), '?')!r}" if near != "?" else ""
    return TextEncodingError(
        f"{source} is not UTF-8 text: byte 0x{data[exc.start : exc.start + 1].hex()}{where} "
        "cannot be decoded. The file is probably Latin-1 or Windows-1252 (e.g. an accented "
        "cell name). Save it as UTF-8 (Excel: 'CSV UTF-8'; or `iconv -f latin1 -t utf-8`) "
        "and read it again."
    )


def file_head(path: Path, n: int = 512) -> bytes:
    """Return the first ``n`` bytes of ``path``."""
    with open(path, "rb") as handle:
        return handle.read(n)


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes."""
    return file_head(path, 2) == GZIP_MAGIC


def open_text(path: Path) -> IO[str]:
    """Open ``path`` as text, decompressing gzip."""
    return gzip.open(path, "rt") if is_gzip(path) else open(path)


def read_column_file(path: Path, what: str) -> pd.DataFrame:
    """Read a headerless tab-separated file (gzip or not) as strings; typed error if unreadable."""
    try:
        return pd.read_csv(
            path,
            sep="\t",
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            comment=None,
            compression="gzip" if is_gzip(path) else None,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({0: pd.Series([], dtype=str)})
    except UnicodeDecodeError as exc:
        raise not_utf8(path.name, exc) from exc
    except (pd.errors.ParserError, *DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(f"Could not read the {what} file {path.name} ({exc}).") from exc
