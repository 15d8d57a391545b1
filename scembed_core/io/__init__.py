"""Readers for scATAC-seq datasets, with validation and errors that say what to do next.

:func:`read_dataset` accepts every format the app offers for upload and returns one
normalised :class:`anndata.AnnData`:

- ``X`` is a binary ``scipy.sparse.csr_matrix`` of ``float32`` (1.0 where a count > 0),
  cells x peaks;
- ``var`` has ``chr`` (str), ``start`` and ``end`` (int64) and ``var_names`` of the form
  ``chr_start_end``; the coordinates are validated (``start < end``, no negatives);
- ``obs`` keeps the file's cell metadata (labels are data: HTML or script text is kept
  verbatim, escaping is the app's job) and gains ``n_peaks`` (non-zeros per cell) when absent;
- ``uns["scembed_read"]`` records the format, the source file name and reader statistics.

Every reader refuses bad input with a typed error from :mod:`scembed_core.errors` before
doing expensive work: pickles are never loaded, archives are checked for path traversal,
links and decompression bombs before anything is extracted, and declared matrix sizes are
checked against a memory budget before any matrix is allocated.

One room per concern: :mod:`._detect` (format detection, pickle refusal), :mod:`._budget`
(memory budget), :mod:`._normalize` (validation and binarisation), one reader per format
(:mod:`.h5ad`, :mod:`.tenx`, :mod:`.table`, :mod:`.fragments`), :mod:`.archives` (safe
extraction) and :mod:`.read` (the entry point).
"""

from __future__ import annotations

from ._budget import (
    check_h5_budget,
    check_memory_budget,
    container_memory_available,
    declared_bytes,
    default_memory_budget,
    estimate_dataset_bytes,
)
from ._detect import PICKLE_SUFFIXES, SUPPORTED_FORMATS, detect_format
from .archives import DEFAULT_MAX_UNCOMPRESSED_BYTES, MAX_COMPRESSION_RATIO, extract_archive
from .fragments import read_fragment_sample, read_fragments
from .h5ad import read_h5ad_checked, regions_from_var
from .labels import guess_label_key
from .read import read_dataset

__all__ = [
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "MAX_COMPRESSION_RATIO",
    "PICKLE_SUFFIXES",
    "SUPPORTED_FORMATS",
    "check_h5_budget",
    "check_memory_budget",
    "container_memory_available",
    "declared_bytes",
    "default_memory_budget",
    "detect_format",
    "estimate_dataset_bytes",
    "extract_archive",
    "guess_label_key",
    "read_dataset",
    "read_fragments",
    "read_fragment_sample",
    "read_h5ad_checked",
    "regions_from_var",
]
