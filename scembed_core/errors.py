"""Typed exceptions and warnings raised by :mod:`scembed_core`.

Every error says what was expected, what was found and what to do next, so the command
line can print it as one line and the app can show it with :func:`streamlit.error`.
"""

from __future__ import annotations


class ScEmbedError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputFormatError(ScEmbedError, ValueError):
    """A file could not be read as any supported single-cell format."""


class TextEncodingError(InputFormatError):
    """A text file (table, barcodes, peaks, fragments) is not UTF-8, e.g. Latin-1."""


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
    """The Hugging Face hub could not be reached and the files are not in the local cache.

    ``repo_id`` and ``reason`` (when known) let a caller word its own advice: the message
    itself advises the command line.
    """

    def __init__(
        self, message: str, *, repo_id: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.reason = reason


class TrainingError(ScEmbedError):
    """Training cannot run on the given data (e.g. no cell has two regions)."""


class ParameterError(ScEmbedError, ValueError):
    """An argument is outside its valid range."""


class MissingDependencyError(ScEmbedError, ImportError):
    """An optional part needs a package that is not installed (the message names the extra)."""


class ScEmbedWarning(UserWarning):
    """Base class of the warnings the engine emits."""


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


class ScEmbedDeprecationWarning(FutureWarning):
    """A keyword or name of scEmbed's API is deprecated; the message names the new one.

    A ``FutureWarning`` (shown by default, as pandas and scanpy do for user-facing
    deprecations), so notebook users see it without changing their warning filters.
    """


def renamed_keyword(
    old_name: str, old_value: object, new_name: str, new_value: object, default: object
) -> object:
    """Return the value of a renamed keyword, warning when the old name was used.

    Parameters
    ----------
    old_name, old_value
        The deprecated keyword and what the caller passed for it (None: not passed).
    new_name, new_value
        The new keyword and what the caller passed for it.
    default
        The new keyword's default (to tell whether the caller passed it).

    Returns
    -------
    object
        ``old_value`` when only the old keyword was passed (with a
        :class:`ScEmbedDeprecationWarning` naming the new one), else ``new_value``.

    Raises
    ------
    ParameterError
        Both keywords were passed with different values.
    """
    import warnings

    if old_value is None:
        return new_value
    if new_value != default and new_value != old_value:
        raise ParameterError(f"{old_name}= is the old name of {new_name}=; pass only {new_name}=.")
    warnings.warn(
        f"{old_name}= is deprecated; use {new_name}= instead.",
        ScEmbedDeprecationWarning,
        stacklevel=3,
    )
    return old_value


class Cancelled(ScEmbedError):
    """Work was stopped before it finished; nothing partial is returned.

    The caller asked (a closed tab, a rerun) or the work's time budget ran out.
    """
