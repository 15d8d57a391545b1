"""Small types shared by the engine's modules (imports nothing of the engine).

The ``Literal`` aliases name every choice a public function offers, so a type checker and an
editor see them; the runtime tuples that validate them are derived from these aliases with
:func:`typing.get_args` (one list per choice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

__all__ = [
    "ClusterMethod",
    "DatasetFormat",
    "GenomeBuild",
    "LabelMethod",
    "Pooling",
    "ProgressCallback",
    "QueryGenome",
    "ReferenceFormat",
]

#: ``progress(fraction, message)``: ``fraction`` in [0, 1] of the call's work done so far,
#: ``message`` a short description of the current stage. Long engine calls accept one;
#: the command line draws it as a terminal bar, the app as ``st.progress``.
ProgressCallback: TypeAlias = Callable[[float, str], None]

#: How cells get labels: the classifier fitted on the reference cells, or the kNN vote.
LabelMethod: TypeAlias = Literal["classifier", "knn"]

#: Community detection on the neighbour graph.
ClusterMethod: TypeAlias = Literal["louvain", "leiden"]

#: How a cell's region vectors are pooled into its embedding (scEmbed's default: mean).
Pooling: TypeAlias = Literal["mean", "max"]

#: The genome builds the engine can detect and lift between.
GenomeBuild: TypeAlias = Literal["hg19", "hg38"]

#: The query's build as a caller gives it: detected from the peaks (``"auto"``) or declared.
QueryGenome: TypeAlias = Literal["auto", "hg19", "hg38"]

#: The dataset formats :func:`scembed_core.io.detect_format` names (archives: zip, tar).
DatasetFormat: TypeAlias = Literal["h5ad", "10x_h5", "mtx_dir", "csv", "fragments", "zip", "tar"]

#: The reference folder formats: a scEmbed bundle or a geniml model folder.
ReferenceFormat: TypeAlias = Literal["scembed-bundle", "geniml"]
