"""scEmbed engine: region embeddings for single-cell ATAC-seq, projection and annotation.

The public face, AnnData first (as scanpy's)::

    import scembed_core as se

    reference = se.load_reference("default")      # or a folder, or "hf:OWNER/NAME@REV"
    adata = se.read("cells.h5ad")                  # h5ad, 10x h5/mtx, csv, fragments, archives
    se.tl.project(adata, reference)                # obsm X_scembed, X_scembed_umap, ...
    se.tl.cluster(adata, n_clusters=12)            # obs scembed_cluster
    se.tl.transfer_labels(adata, reference)        # obs scembed_label, label probabilities
    se.tl.annotate_clusters(adata, reference)      # obs scembed_cluster_label, cluster table
    se.write(adata, "annotated.h5ad")
    se.pl.query(adata, reference)                  # a Plotly figure: cells on the map

Every verb records its parameters in ``adata.uns["scembed"]``. The array functions stay
underneath, one module per stage: :mod:`~scembed_core.io`, :mod:`~scembed_core.regions`,
:mod:`~scembed_core.train`, :mod:`~scembed_core.project`, :mod:`~scembed_core.cluster`,
:mod:`~scembed_core.labels.assign`, :mod:`~scembed_core.evaluate`, :mod:`~scembed_core.reference`
and :mod:`~scembed_core.hub`. Nothing heavy is imported until it is used; the engine never
imports streamlit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["__version__", "read", "load_reference", "write", "tl", "pl"]

if TYPE_CHECKING:
    from pathlib import Path

    import anndata as ad

    from . import pl, tl
    from .liftover import Chain
    from .reference import Reference
    from .regions import GenomicRegions


def read(
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
    """Read a scATAC-seq dataset as binary cells x peaks.

    The same reader as :func:`scembed_core.io.read_dataset`, which documents the formats and
    the checks made before anything large is read.

    Parameters
    ----------
    path
        An ``.h5ad``, a 10x ``.h5`` or matrix folder, a ``.csv``/``.tsv`` table (cells as
        rows, region columns ``chr_start_end``), a fragments file, or a ``.zip``/``.tar.gz``
        holding one of them.
    layer
        For ``.h5ad``: the layer holding the counts (default ``X``, else ``counts``).
    barcodes
        A file with one barcode per line: only these cells are kept.
    universe
        The region universe a fragments file is counted on (e.g.
        ``reference.model.universe``); ignored for other formats.
    min_fragments
        For fragments files: keep barcodes with at least this many overlapping fragments.
    max_bytes
        Memory budget for the matrix, checked before it is read (default: half the free
        memory).
    max_uncompressed_bytes
        For archives: the most they may expand to (default
        :data:`scembed_core.io.DEFAULT_MAX_UNCOMPRESSED_BYTES`, 4 GiB).
    liftover
        For fragments files: a chain (:func:`scembed_core.liftover.chain_between`) that
        lifts the fragments onto the universe's build before counting.

    Returns
    -------
    anndata.AnnData
        Binary float32 CSR ``X`` (cells x peaks); ``var`` with ``chr``, ``start``, ``end``;
        the file's ``obs`` plus ``n_peaks``; ``uns["scembed_read"]`` describing the read.

    Raises
    ------
    scembed_core.errors.InputFormatError
        Unsupported, truncated or corrupt files, or bad coordinates.
    scembed_core.errors.UnsafeInputError
        Pickle-like files; path traversal, links or bombs in archives.
    scembed_core.errors.MemoryBudgetError
        The matrix would not fit in ``max_bytes``.

    Examples
    --------
    >>> import scembed_core as se
    >>> adata = se.read("pbmc_peaks.h5ad")  # doctest: +SKIP
    >>> adata.X.max(), list(adata.var.columns[:3])  # doctest: +SKIP
    (1.0, ['chr', 'start', 'end'])
    """
    from .io import read_dataset

    return read_dataset(
        path,
        layer=layer,
        barcodes=barcodes,
        universe=universe,
        min_fragments=min_fragments,
        max_bytes=max_bytes,
        max_uncompressed_bytes=max_uncompressed_bytes,
        liftover=liftover,
    )


def load_reference(spec: str | Path = "default", *, trust: bool = False) -> Reference:
    """Load a reference to project onto: the built-in one, a folder or a hub model.

    Parameters
    ----------
    spec
        ``"default"`` (the built-in bone-marrow reference, hg19); a scEmbed bundle folder
        (``manifest.json``) or a geniml model folder; or ``"hf:OWNER/NAME[@REVISION]"``
        on the Hugging Face hub (pin a revision for reproducible runs).
    trust
        Allow a geniml folder whose only weights are a gensim ``model.bin`` pickle to be
        unpickled. Leave it off for anything you did not make yourself.

    Returns
    -------
    scembed_core.reference.Reference
        A frozen reference: region model, reference cells and labels where the source has
        them, the map and a kNN index; ``reference.fingerprint`` identifies it.

    Raises
    ------
    scembed_core.errors.ReferenceBundleError
        The folder is missing, incomplete, fails its checksums or is of an unknown kind.
    scembed_core.errors.UntrustedSourceError
        Loading would unpickle a file and ``trust`` is off.
    scembed_core.errors.HubUnavailableError
        The hub cannot be reached and the model is not in the local cache.

    See Also
    --------
    scembed_core.reference.load_bundle : read one bundle folder (no dispatch).

    Examples
    --------
    >>> import scembed_core as se
    >>> reference = se.load_reference("default")  # doctest: +SKIP
    >>> reference.genome  # doctest: +SKIP
    'hg19'
    """
    from .reference import resolve_reference

    return resolve_reference(spec, trust=trust)


def write(adata: ad.AnnData, path: str | Path) -> Path:
    """Write an annotated dataset as ``.h5ad`` (gzip-compressed).

    ``uns`` is made h5py-safe in the copy that is written (``adata`` is not changed), so
    every parameter the ``se.tl`` verbs recorded reads back with :func:`anndata.read_h5ad`.

    Parameters
    ----------
    adata
        The dataset, typically after ``se.tl.project``, ``cluster`` and
        ``transfer_labels``.
    path
        Where to write; missing parent folders are created.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import scembed_core as se
    >>> se.write(adata, "annotated.h5ad")  # doctest: +SKIP
    PosixPath('annotated.h5ad')
    """
    from .results import write_h5ad

    return write_h5ad(adata, path)


def __getattr__(name: str) -> Any:  # noqa: ANN401 - a lazily imported submodule
    """Import the ``tl`` and ``pl`` submodules on first use (keeps the import light).

    Parameters
    ----------
    name
        The attribute asked for.

    Returns
    -------
    module
        The submodule.

    Raises
    ------
    AttributeError
        For any other name.
    """
    if name in ("tl", "pl"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
