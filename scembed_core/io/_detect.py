"""Name a dataset's format from its name and first bytes; refuse pickles by name or content."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import pandas as pd

from .._types import DatasetFormat
from ..errors import EmptyDataError, InputFormatError, UnsafeInputError
from ..regions import NAME_PATTERN
from ._files import DECOMPRESS_ERRORS, GZIP_MAGIC, file_head, is_gzip

SUPPORTED_FORMATS: tuple[str, ...] = (
    ".h5ad (AnnData, cells x peaks)",
    "10x filtered_peak_bc_matrix.h5",
    "10x matrix folder (matrix.mtx[.gz], barcodes.tsv[.gz], peaks.bed[.gz])",
    ".csv / .csv.gz / .tsv table (cells as rows, region columns named chr1_100_600)",
    "fragments.tsv.gz (chr, start, end, barcode, count; needs a region universe)",
    ".zip / .tar.gz / .tgz archive holding one of the above",
)


#: File suffixes of formats that are (or may carry) Python pickles; refused everywhere.
PICKLE_SUFFIXES = (
    ".pkl",
    ".pickle",
    ".joblib",
    ".npy",
    ".npz",
    ".pt",
    ".pth",
    ".ckpt",
    ".sav",
    ".dill",
    ".cloudpickle",
)


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


_NUMPY_MAGIC = b"\x93NUMPY"


def _first_text_line(path: Path) -> str:
    """First line that is not a ``#`` comment, decompressing gzip; '' if there is none."""
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rt", errors="replace") as handle:
            for _ in range(1000):
                line = handle.readline(1 << 20)
                if not line:
                    return ""
                if not line.startswith("#") and line.strip():
                    return line.rstrip("\r\n")
    except DECOMPRESS_ERRORS as exc:
        raise InputFormatError(
            f"{path.name} could not be decompressed (truncated or corrupt gzip: {exc}). "
            "Upload the file again or re-create it with gzip."
        ) from exc
    return ""


def _looks_like_fragments(line: str) -> bool:
    fields = line.split("\t")
    return len(fields) >= 4 and fields[1].isdigit() and fields[2].isdigit()


def _text_format(path: Path) -> str:
    line = _first_text_line(path)
    if line.startswith("%%MatrixMarket"):
        raise InputFormatError(
            f"{path.name} is a lone Matrix Market file. Upload the whole 10x folder as a .zip "
            "or .tar.gz (matrix.mtx.gz with barcodes.tsv.gz and peaks.bed.gz)."
        )
    if _looks_like_fragments(line):
        return "fragments"
    sep = "\t" if line.count("\t") > line.count(",") else ","
    fields = pd.Series(line.split(sep), dtype=object).str.strip().str.strip('"')
    if len(fields) > 1 and fields.str.match(NAME_PATTERN).any():
        return "csv"
    return ""


def _hdf5_kind(path: Path) -> str:
    try:
        with h5py.File(path, "r") as handle:
            if "obs" in handle and "var" in handle:
                return "h5ad"
            return "10x_h5"
    except OSError as exc:
        raise InputFormatError(
            f"{path.name} is not a readable HDF5 file (truncated or corrupt: {exc}). "
            "Upload it again or re-export it."
        ) from exc


def _unsafe_pickle(name: str) -> UnsafeInputError:
    return UnsafeInputError(
        f"{name} looks like a Python pickle (or a NumPy/joblib/torch file that can hold one); "
        "this app never unpickles uploaded files because that can run arbitrary code. "
        f"Save the data as .h5ad or one of: {'; '.join(SUPPORTED_FORMATS)}."
    )


def detect_format(path: str | Path) -> DatasetFormat:
    """Name the format of ``path`` from its name and, where needed, its first bytes.

    Returns
    -------
    str
        One of ``"h5ad"``, ``"10x_h5"``, ``"mtx_dir"``, ``"csv"``, ``"fragments"``,
        ``"zip"`` or ``"tar"``.

    Raises
    ------
    UnsafeInputError
        For pickle-like files (``.pkl``, ``.joblib``, ``.npy``, ...), by name or content.
    InputFormatError
        If the file matches no supported format.
    """
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path} does not exist.")
    if path.is_dir():
        return "mtx_dir"
    name = path.name.lower()
    if name.endswith(PICKLE_SUFFIXES):
        raise _unsafe_pickle(path.name)
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{path.name} is empty (0 bytes).")
    head = file_head(path)
    if head.startswith(_NUMPY_MAGIC) or (len(head) > 1 and head[0] == 0x80 and head[1] <= 5):
        raise _unsafe_pickle(path.name)
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".zip",)):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    if head.startswith(_HDF5_MAGIC):
        return _hdf5_kind(path)
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt", ".txt.gz")) and "fragments" not in name:
        if name.endswith(".tsv") and _looks_like_fragments(_first_text_line(path)):
            return "fragments"
        return "csv"
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(512)
        except DECOMPRESS_ERRORS as exc:
            raise InputFormatError(
                f"{path.name} could not be decompressed (truncated or corrupt gzip: {exc})."
            ) from exc
        if inner[257:262] == b"ustar":
            return "tar"
    kind = _text_format(path)
    if kind:
        return kind
    raise InputFormatError(
        f"{path.name} is not in a supported format. Supported formats: "
        f"{'; '.join(SUPPORTED_FORMATS)}."
    )
