"""Reference bundles: region embeddings, reference cells, their map and a kNN index.

Rooms: :mod:`.core` (the frozen :class:`Reference`), :mod:`.bundle` (bundle folders: write,
read, verify checksums, zip; the folder layout is described there) and :mod:`.resolve` (the
one dispatcher from a spec: ``"default"``, a bundle or geniml folder, ``"hf:OWNER/NAME[@REV]"``).

``load_reference`` here is the deprecated name of :func:`load_bundle`; the loader for any
spec is :func:`scembed_core.load_reference` (:func:`resolve_reference`).
"""

from __future__ import annotations

from .bundle import bundle_to_zip_bytes, load_bundle, save_reference
from .bundle import load_reference as load_reference  # deprecated name of load_bundle
from .core import DEFAULT_REFERENCE_DIR, DEMO_QUERY_PATH, PACKAGE_DATA, SCHEMA_VERSION, Reference
from .resolve import load_default_reference, resolve_reference

__all__ = [
    "Reference",
    "save_reference",
    "load_bundle",
    "load_default_reference",
    "resolve_reference",
    "bundle_to_zip_bytes",
    "DEFAULT_REFERENCE_DIR",
    "DEMO_QUERY_PATH",
    "PACKAGE_DATA",
    "SCHEMA_VERSION",
]
