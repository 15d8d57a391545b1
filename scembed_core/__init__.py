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

__all__ = ["__version__", "read", "load_reference", "write", "tl"]

if TYPE_CHECKING:
    from pathlib import Path

    import anndata as ad

    from . import tl
    from .reference import Reference


def read(path: str | Path, **kwargs: Any) -> ad.AnnData:
    """Read a dataset as binary cells x peaks (:func:`scembed_core.io.read_dataset`)."""
    from .io import read_dataset

    return read_dataset(path, **kwargs)


def load_reference(spec: str | Path = "default", *, trust: bool = False) -> Reference:
    """Load a reference: ``"default"``, a bundle or geniml folder, or ``"hf:OWNER/NAME@REV"``."""
    from .reference import resolve_reference

    return resolve_reference(spec, trust=trust)


def write(adata: ad.AnnData, path: str | Path) -> Path:
    """Write the annotated ``.h5ad`` (:func:`scembed_core.results.write_h5ad`)."""
    from .results import write_h5ad

    return write_h5ad(adata, path)


def __getattr__(name: str) -> Any:
    if name == "tl":
        import importlib

        return importlib.import_module(".tl", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
