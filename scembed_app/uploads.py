"""Turn uploaded bytes into an AnnData through the engine's reader.

No Streamlit import: the Data page passes ``(file name, bytes)`` pairs here, so the same
code path is tested directly. Uploads are written to a private temporary folder under
their own (sanitised) names, because :func:`scembed_core.io.read_dataset` recognises
formats by file name; a 10x ``matrix.mtx`` + ``barcodes.tsv`` + ``peaks.bed`` triple is
written side by side and the folder is passed instead.

The Data page spools an upload to that folder first (:func:`spool_uploads`), lets go of
every copy of its bytes, and only then parses it (:func:`read_spooled`), so Streamlit's
copies of the upload and the parsed dataset are never in memory together.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from scembed_core.errors import InputFormatError, UnsafeInputError

if TYPE_CHECKING:  # anndata, the readers and pandas load on first use, not at start-up
    from anndata import AnnData

    from scembed_core.regions import GenomicRegions

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "MAX_UPLOAD_BYTES",
    "LoadedDataset",
    "SpooledUpload",
    "upload_digest",
    "spool_uploads",
    "read_spooled",
    "may_be_fragments",
    "load_upload",
    "load_uploads",
    "load_path",
]

MAX_UPLOAD_BYTES = 1024**3  # mirrors server.maxUploadSize = 1024 (MB) in .streamlit/config.toml
# Extensions offered by the uploader (the last suffix only, as st.file_uploader checks it).
ACCEPTED_EXTENSIONS = ["h5ad", "h5", "mtx", "gz", "tsv", "bed", "csv", "zip", "tgz", "tar", "txt"]


@dataclass(frozen=True)
class LoadedDataset:
    """A query dataset held in session state.

    Attributes
    ----------
    name
        What the user uploaded (file names joined by ``+``) or ``demo``.
    digest
        SHA-256 of the uploaded bytes (names included); the cache key of every
        per-upload result.
    adata
        Cells x peaks AnnData as returned by the engine's reader.
    n_bytes
        Total uploaded size.
    original
        For a dataset lifted onto the reference's genome build: the dataset as uploaded
        (``digest`` then also names the liftover, so every cache key covers it).
    liftover
        For a lifted dataset: the engine's liftover record.
    sha256
        SHA-256 of the file's bytes when the dataset came from one file (the input digest
        ``run.json`` records, which the command line checks); None for several files.
    """

    name: str
    digest: str
    adata: AnnData
    n_bytes: int = 0
    original: LoadedDataset | None = None
    liftover: dict | None = None
    sha256: str | None = None


def upload_digest(files: Sequence[tuple[str, bytes]]) -> str:
    """Content digest of one or more uploaded files (order-independent)."""
    sha = hashlib.sha256()
    for name, data in sorted(files, key=lambda f: f[0]):
        sha.update(name.encode("utf-8", "replace") + b"\0")
        sha.update(hashlib.sha256(data).digest())
    return sha.hexdigest()


def _safe_name(name: str) -> str:
    """The file's base name, refusing pickles and names that could escape the folder."""
    base = PurePath(name.replace("\\", "/")).name
    if not base or base in {".", ".."}:
        raise InputFormatError(f"The uploaded file name {name!r} is empty or invalid.")
    from scembed_core.io import PICKLE_SUFFIXES

    if base.lower().endswith(PICKLE_SUFFIXES):
        raise UnsafeInputError(
            f"{base} looks like a pickled Python object (.pkl/.joblib/...). Loading it "
            "could run arbitrary code, so it is refused. Export your data as .h5ad "
            "(adata.write_h5ad) or as a 10x matrix.mtx + barcodes + peaks instead."
        )
    return base


@dataclass(frozen=True)
class SpooledUpload:
    """An upload written to a private temporary folder, not yet parsed.

    Attributes
    ----------
    folder
        The folder (``scembed-upload-*`` in the temporary directory); removed by
        :func:`read_spooled` (or :meth:`discard`).
    names
        The files' sanitised names, in upload order.
    n_bytes
        Total size.
    digest
        :func:`upload_digest` of the files.
    sha256
        SHA-256 of the file's bytes for a single file; None for several.
    """

    folder: Path
    names: tuple[str, ...]
    n_bytes: int
    digest: str
    sha256: str | None

    def __post_init__(self) -> None:
        # also removed when the last reference goes: a session that ended between the
        # uploader's callback and the page's read leaves nothing on disk
        cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)
        object.__setattr__(self, "_cleanup", cleanup)

    @property
    def target(self) -> Path:
        """What the engine reads: the file, or the folder for a 10x triple."""
        return self.folder / self.names[0] if len(self.names) == 1 else self.folder

    def discard(self) -> None:
        """Remove the folder and its files (once)."""
        self._cleanup()


def spool_uploads(
    files: Sequence[tuple[str, bytes]], *, max_bytes: int = MAX_UPLOAD_BYTES
) -> SpooledUpload:
    """Check an upload's names and size and write it to a private temporary folder.

    Writes the bytes as they are (no copy); the caller can drop them afterwards and read
    the files with :func:`read_spooled`.

    Parameters
    ----------
    files
        ``(file name, content)`` pairs as received from ``st.file_uploader``.
    max_bytes
        Largest total upload (the app passes its deployment's limit).

    Raises
    ------
    scembed_core.errors.ScEmbedError
        For refused file types, duplicate names, several files that are not a 10x triple,
        an empty upload or one over ``max_bytes``.
    """
    if not files:
        raise InputFormatError("No file was uploaded.")
    names = [_safe_name(name) for name, _ in files]
    if len(set(names)) != len(names):
        raise InputFormatError(f"Two uploaded files have the same name: {sorted(names)}.")
    if len(names) > 1 and not any(n.lower().endswith((".mtx", ".mtx.gz")) for n in names):
        raise InputFormatError(
            f"{len(names)} files were uploaded together ({', '.join(names[:5])}); only a 10x "
            "matrix.mtx + barcodes + peaks triple is read from several files. Remove the "
            "files you do not mean from the uploader (it keeps earlier ones) and upload one "
            "dataset at a time."
        )
    total = sum(len(data) for _, data in files)
    if total > max_bytes:
        raise InputFormatError(
            f"The upload is {total / 2**20:,.0f} MB; this server's limit is "
            f"{max_bytes / 2**20:,.0f} MB. Subset the cells or peaks first, or run "
            "`python -m scembed_core` on the command line."
        )
    if total == 0:
        raise InputFormatError("The uploaded file is empty (0 bytes).")
    digest = upload_digest(files)
    sha256 = hashlib.sha256(files[0][1]).hexdigest() if len(files) == 1 else None
    folder = Path(tempfile.mkdtemp(prefix="scembed-upload-"))
    try:
        for name, (_, data) in zip(names, files, strict=True):
            (folder / name).write_bytes(data)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputFormatError(
            f"The upload could not be stored for reading ({exc.strerror or exc})."
        ) from exc
    return SpooledUpload(folder, tuple(names), total, digest, sha256)


def read_spooled(
    spool: SpooledUpload,
    *,
    universe: GenomicRegions | None = None,
    min_fragments: int = 1,
    reference: Any = None,
) -> LoadedDataset:
    """Read a spooled upload with the engine, then remove its folder.

    Parameters
    ----------
    spool
        From :func:`spool_uploads`.
    universe
        The reference's regions: a fragments file is counted over them (ignored for
        every other format).
    min_fragments
        Passed to :func:`scembed_core.io.read_dataset` (fragments files only).
    reference
        The reference (optional): a fragments file whose build is confidently another
        than the reference's is lifted onto it while it is counted
        (:func:`scembed_core.liftover.query.chain_for_fragments`).

    Raises
    ------
    scembed_core.errors.ScEmbedError
        For anything the engine cannot read.
    """
    from scembed_core.io import read_dataset

    try:
        chain = None
        if reference is not None:
            from scembed_core.liftover.query import chain_for_fragments

            chain = chain_for_fragments(spool.target, reference)
        adata = read_dataset(
            spool.target, universe=universe, min_fragments=min_fragments, liftover=chain
        )
        adata = adata.to_memory() if adata.isbacked else adata
    finally:
        spool.discard()
    lifted = adata.uns.get("scembed_read", {}).get("liftover")
    return LoadedDataset(
        name=" + ".join(spool.names),
        digest=spool.digest,
        adata=adata,
        n_bytes=spool.n_bytes,
        liftover=dict(lifted) if lifted else None,
        sha256=spool.sha256,
    )


def load_uploads(
    files: Sequence[tuple[str, bytes]],
    *,
    universe: GenomicRegions | None = None,
    min_fragments: int = 1,
    reference: Any = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> LoadedDataset:
    """Read one upload (or a 10x triple uploaded as three files) with the engine.

    :func:`spool_uploads` then :func:`read_spooled`; the Data page calls the two itself
    so that it can let go of the bytes in between.

    Parameters
    ----------
    files
        ``(file name, content)`` pairs as received from ``st.file_uploader``.
    universe, min_fragments, reference
        As for :func:`read_spooled`.
    max_bytes
        Largest total upload (the app passes its deployment's limit).

    Raises
    ------
    scembed_core.errors.ScEmbedError
        For anything the engine cannot read, and for refused file types.
    """
    spool = spool_uploads(files, max_bytes=max_bytes)
    return read_spooled(spool, universe=universe, min_fragments=min_fragments, reference=reference)


# What a fragments upload may be called (the QC's TSS enrichment reads such a file's bytes).
FRAGMENT_SUFFIXES = (".tsv.gz", ".tsv", ".bed.gz")


def may_be_fragments(names: Sequence[str]) -> bool:
    """Whether an upload of these file names may be a fragments file."""
    return len(names) == 1 and names[0].endswith(FRAGMENT_SUFFIXES)


def load_upload(name: str, data: bytes, *, universe: GenomicRegions | None = None) -> LoadedDataset:
    """Read a single uploaded file; see :func:`load_uploads`."""
    return load_uploads([(name, data)], universe=universe)


def load_path(path: str | Path, *, name: str | None = None) -> LoadedDataset:
    """Read a dataset from disk (the demo), with a digest of the file's bytes."""
    from scembed_core.io import read_dataset

    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"The dataset file {path} does not exist.")
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    adata = read_dataset(path)
    return LoadedDataset(
        name=name or path.name,
        digest=sha.hexdigest(),
        adata=adata,
        n_bytes=path.stat().st_size,
        sha256=sha.hexdigest(),
    )
