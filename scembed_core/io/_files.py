"""Low-level file helpers shared by the readers: gzip sniffing, text opening, column files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

import pandas as pd

from ..errors import InputFormatError

GZIP_MAGIC = b"\x1f\x8b"
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)


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
    except (pd.errors.ParserError, *DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(f"Could not read the {what} file {path.name} ({exc}).") from exc
