"""The entry point: detect the format, parse, validate and binarise (:func:`read_dataset`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import pandas as pd

from ..errors import InputFormatError, ParameterError
from ..regions import GenomicRegions
from ._detect import detect_format
from ._normalize import Parsed, finalize
from .archives import DEFAULT_MAX_UNCOMPRESSED_BYTES, extract_archive
from .fragments import parse_fragments, read_barcode_list
from .h5ad import parse_h5ad
from .table import parse_table
from .tenx import parse_10x_h5, parse_mtx_dir

if TYPE_CHECKING:
    from ..liftover import Chain


def _parse(
    path: Path,
    kind: str,
    *,
    layer: str | None,
    universe: GenomicRegions | None,
    keep: pd.Index | None,
    min_fragments: int,
    max_bytes: int | None,
    liftover: Chain | None = None,
) -> Parsed:
    if kind == "h5ad":
        return parse_h5ad(path, layer, max_bytes)
    if layer is not None:
        raise ParameterError(
            f"layer={layer!r} applies to .h5ad files only; {path.name} is a {kind} dataset."
        )
    if kind == "10x_h5":
        return parse_10x_h5(path, max_bytes)
    if kind == "mtx_dir":
        return parse_mtx_dir(path, max_bytes)
    if kind == "csv":
        return parse_table(path, max_bytes)
    if kind == "fragments":
        if universe is None:
            raise ParameterError(
                f"{path.name} is a fragments file: counting it needs a region universe "
                "(pick a reference first)."
            )
        return parse_fragments(path, universe, keep, min_fragments, max_bytes, 1_000_000, liftover)
    raise InputFormatError(f"{path.name}: archives inside archives are not supported.")


def read_dataset(
    path: str | Path,
    *,
    layer: str | None = None,
    barcodes: str | Path | None = None,
    universe: GenomicRegions | None = None,
    min_fragments: int = 1,
    max_bytes: int | None = None,
    max_uncompressed_bytes: int | None = None,
    liftover: Chain | None = None,
) -> ad.AnnData:
    """Read any supported scATAC-seq dataset into the normalised AnnData form.

    Parameters
    ----------
    path
        An ``.h5ad``; a 10x ``.h5``; a 10x folder (``matrix.mtx[.gz]``,
        ``barcodes.tsv[.gz]``, ``peaks.bed[.gz]``, peaks x cells); a ``.csv``/``.csv.gz``/
        ``.tsv`` table (cells as rows, first column the cell names, region columns named
        ``chr_start_end``); a fragments file; or a ``.zip``/``.tar.gz``/``.tgz`` holding one.
        Files with other names are recognised by their content.
    layer
        For ``.h5ad``: the layer holding the counts (default ``X``, or the ``counts`` layer
        when ``X`` is absent or empty).
    barcodes
        Optional file with one barcode per line: only these cells are kept.
    universe
        Region universe; required for fragments files, ignored otherwise.
    min_fragments
        For fragments files: keep barcodes with at least this many overlapping fragments.
    max_bytes
        Memory budget checked against the declared size before reading (default: half the
        free memory).
    max_uncompressed_bytes
        For archives: the most they may expand to (``None``:
        :data:`~scembed_core.io.archives.DEFAULT_MAX_UNCOMPRESSED_BYTES`).
    liftover
        For fragments files: a chain (:func:`scembed_core.liftover.chain_between`) to lift
        the fragments through onto the universe's build before counting; the counts of
        lifted and dropped fragments go to ``uns["scembed_read"]["liftover"]``.

    Returns
    -------
    anndata.AnnData
        Binary float32 CSR ``X`` (cells x peaks), ``var`` with ``chr``/``start``/``end`` and
        ``chr_start_end`` names, the file's ``obs`` plus ``n_peaks``, and
        ``uns["scembed_read"]`` describing the read.

    Raises
    ------
    UnsafeInputError
        Pickle-like files, path traversal, links or decompression bombs in archives.
    InputFormatError
        Unsupported, truncated or corrupt files (subclasses: :class:`CoordinateError`,
        :class:`EmptyDataError`, :class:`DuplicateNamesError`, :class:`CountValueError`).
    MemoryBudgetError
        The declared matrix size exceeds ``max_bytes``.
    """
    path = Path(path)
    kind = detect_format(path)
    keep = read_barcode_list(barcodes) if barcodes is not None else None
    options = {
        "layer": layer,
        "universe": universe,
        "keep": keep,
        "min_fragments": min_fragments,
        "max_bytes": max_bytes,
        "liftover": liftover,
    }
    if kind not in ("zip", "tar"):
        parsed = _parse(path, kind, **options)
        return finalize(parsed, source=path.name, keep=keep)
    with tempfile.TemporaryDirectory(prefix="scembed-upload-") as tmp:
        limit = (
            DEFAULT_MAX_UNCOMPRESSED_BYTES
            if max_uncompressed_bytes is None
            else max_uncompressed_bytes
        )
        inner = extract_archive(path, tmp, max_uncompressed_bytes=limit)
        inner_kind = detect_format(inner)
        if inner_kind in ("zip", "tar"):
            raise InputFormatError(f"{path.name}: archives inside archives are not supported.")
        parsed = _parse(inner, inner_kind, **options)
        return finalize(parsed, source=f"{path.name}/{inner.relative_to(tmp)}", keep=keep)
