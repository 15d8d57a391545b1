"""Typed exceptions and warnings raised by :mod:`scembed_core`.

Every error says what was expected, what was found and what to do next, so the command
line can print it as one line and the app can show it with :func:`streamlit.error`.
"""

from __future__ import annotations


class ScEmbedError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputFormatError(ScEmbedError, ValueError):
    """A file could not be read as any supported single-cell format."""


class CoordinateError(InputFormatError):
    """Region coordinates are missing or invalid (no columns, start >= end, negative)."""


class EmptyDataError(InputFormatError):
    """The dataset has no cells, no peaks or no signal."""


class DuplicateNamesError(InputFormatError):
    """Cell barcodes or peak names are not unique."""


class CountValueError(InputFormatError):
    """Counts are not finite, non-negative numbers."""


class ChromosomeNamingError(ScEmbedError, ValueError):
    """Query and universe chromosome names share nothing, even after reconciling styles."""


class ChainFileError(InputFormatError):
    """A liftover chain file is truncated, corrupt, or not in UCSC chain format."""


class GenomeBuildError(ScEmbedError, ValueError):
    """Query and reference are on different genome builds and cannot be reconciled here.

    Raised when no chain links the two builds, when liftover was turned off, or when a
    declared build contradicts the data.
    """


class UnsafeInputError(ScEmbedError, ValueError):
    """An input was refused for safety (pickles, path traversal, decompression bombs)."""


class MemoryBudgetError(ScEmbedError, MemoryError):
    """An operation would need more memory than the configured budget allows."""


class ReferenceBundleError(ScEmbedError):
    """A reference bundle is missing files, has bad checksums or an unsupported version."""


class UntrustedSourceError(ReferenceBundleError):
    """Loading would unpickle data from a source the caller did not mark as trusted."""


class ModelFormatError(ReferenceBundleError):
    """A pretrained model (e.g. geniml format) is malformed or inconsistent."""


class HubUnavailableError(ScEmbedError, ConnectionError):
    """The Hugging Face hub could not be reached and the files are not in the local cache."""


class TrainingError(ScEmbedError):
    """Training cannot run on the given data (e.g. no cell has two regions)."""


class ParameterError(ScEmbedError, ValueError):
    """An argument is outside its valid range."""


class MissingDependencyError(ScEmbedError, ImportError):
    """An optional part needs a package that is not installed (the message names the extra)."""


class ScEmbedWarning(UserWarning):
    """Base class of the warnings the engine emits."""


class ScEmbedDeprecationWarning(FutureWarning):
    """A name or parameter of the engine is deprecated; the message names its replacement.

    A :class:`FutureWarning`, so that users see it by default (Python hides a plain
    ``DeprecationWarning`` outside ``__main__``); the test suite turns it into an error.
    """


class LowCoverageWarning(ScEmbedWarning):
    """Few query peaks overlap the reference universe (possible genome-build mismatch)."""


class GenomeBuildWarning(ScEmbedWarning):
    """The genome build given disagrees with the one the peaks look like."""


class UnpinnedRevisionWarning(ScEmbedWarning):
    """A hub model was fetched without a pinned revision, so later runs may get other files."""


class WorkspaceError(ScEmbedError):
    """A saved analysis (workspace) cannot be read or written."""


class WorkspaceNotFound(WorkspaceError, LookupError):
    """A workspace id is malformed or names no workspace (one message for both)."""


class WorkspaceExpired(WorkspaceError, LookupError):
    """A workspace was last written longer ago than the expiry allows."""


class WorkspaceTooLarge(WorkspaceError):
    """A write would take a workspace over its size budget; nothing was written."""
