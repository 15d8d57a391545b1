"""Cells x regions tables (``.csv``, ``.csv.gz``, ``.tsv``), read in chunks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import (
    CoordinateError,
    CountValueError,
    EmptyDataError,
    InputFormatError,
    ScEmbedError,
)
from ..regions import NAME_PATTERN, parse_region_names
from ._budget import check_memory_budget
from ._files import DECOMPRESS_ERRORS, is_gzip, not_utf8, open_text
from ._normalize import Parsed, as_str, check_unique


def parse_table(path: Path, max_bytes: int | None) -> Parsed:
    """Return a cells x regions table: first column cell names, region columns ``chr_start_end``.

    Columns whose header is not a region name are kept as cell metadata in ``obs``.
    """
    source = path.name
    compression = "gzip" if is_gzip(path) else None
    try:
        with open_text(path) as handle:
            line = handle.readline().rstrip("\r\n")
            second = handle.readline(1 << 16)
    except UnicodeDecodeError as exc:
        raise not_utf8(source, exc) from exc
    except DECOMPRESS_ERRORS as exc:
        raise InputFormatError(
            f"{source} could not be read (truncated or corrupt gzip: {exc})."
        ) from exc
    if not line.strip():
        raise EmptyDataError(f"{source} is empty: no header and no cells.")
    sep = "\t" if line.count("\t") > line.count(",") else ","
    header = next(csv.reader([line], delimiter=sep))
    columns = pd.Series(header[1:], dtype=object).astype(str).str.strip()
    if len(columns) == 0:
        raise EmptyDataError(
            f"{source} has no peaks: only a cell-name column. Expected region columns named "
            "like chr1_100_600."
        )
    is_region = columns.str.match(NAME_PATTERN).to_numpy()
    if not is_region.any():
        first_field = next(csv.reader([second], delimiter=sep), [""])[0] if second else ""
        transposed = bool(NAME_PATTERN.match(first_field.strip()))
        raise CoordinateError(
            f"No column header of {source} is a region name like chr1_100_600 (found "
            f"{list(columns[:5])}). Expected cells as rows, the first column the cell names and "
            "one column per region."
            + (" The table looks transposed (regions as rows): transpose it." if transposed else "")
        )
    region_names = columns[is_region]
    check_unique(pd.Index(region_names), "peaks", source, "Each region column may appear once.")
    regions = parse_region_names(region_names.to_numpy())
    region_pos = np.flatnonzero(is_region) + 1
    meta_pos = np.flatnonzero(~is_region) + 1
    width = len(columns) + 1
    chunk_rows = int(max(1, min(50_000, 64 * 1024**2 // (8 * width))))
    blocks: list[sp.csr_matrix] = []
    metas: list[pd.DataFrame] = []
    cells: list[np.ndarray] = []
    n_rows, nnz = 0, 0
    try:
        reader = pd.read_csv(
            path, sep=sep, header=0, names=list(range(width)), index_col=0,
            chunksize=chunk_rows, compression=compression, keep_default_na=True,
        )  # fmt: skip
        for chunk in reader:
            counts = chunk[region_pos]
            texty = [c for c, dtype in counts.dtypes.items() if dtype.kind not in "biuf"]
            if texty:
                converted = counts[texty].apply(pd.to_numeric, errors="coerce")
                bad = converted.isna() & counts[texty].notna()
                if bad.to_numpy().any():
                    row, col = np.argwhere(bad.to_numpy())[0]
                    raise CountValueError(
                        f"{source}: {int(bad.to_numpy().sum()):,} counts are not numbers, e.g. "
                        f"{counts[texty].iloc[row, col]!r} in cell {str(chunk.index[row])!r}, "
                        f"column {columns.iloc[texty[col] - 1]!r}. Region columns must hold "
                        "counts; keep labels in columns not named like regions."
                    )
                counts = counts.copy()
                counts[texty] = converted
            values = counts.to_numpy(dtype=np.float64)
            block = sp.csr_matrix(values)
            blocks.append(block)
            metas.append(chunk[meta_pos].set_axis(list(columns[~is_region]), axis=1))
            cells.append(as_str(chunk.index))
            n_rows, nnz = n_rows + len(chunk), nnz + block.nnz
            check_memory_budget(n_rows, len(region_pos), nnz, max_bytes, what=source)
    except (ScEmbedError, MemoryError):
        raise
    except UnicodeDecodeError as exc:
        raise not_utf8(source, exc) from exc
    except (pd.errors.ParserError, ValueError, *DECOMPRESS_ERRORS) as exc:
        raise InputFormatError(
            f"{source} could not be read as a cells x regions table ({exc}). It may be "
            "truncated, or rows may have a different number of fields than the header."
        ) from exc
    if blocks:
        matrix = sp.vstack(blocks, format="csr")
        obs = pd.concat(metas)
        obs.index = pd.Index(np.concatenate(cells), dtype=object)
    else:
        matrix = sp.csr_matrix((0, len(region_pos)), dtype=np.float32)
        obs = pd.DataFrame(index=pd.Index([], dtype=object))
    return Parsed(matrix, regions, obs, "csv")
