"""Reference bundles: region embeddings, reference cells, their map and a kNN index.

Rooms: :mod:`.core` (the frozen :class:`Reference`), :mod:`.bundle` (bundle folders: write,
read, verify checksums, zip; the folder layout is described there) and :mod:`.resolve` (the
one dispatcher from a spec: ``"default"``, a bundle or geniml folder, ``"hf:OWNER/NAME[@REV]"``).
"""

from __future__ import annotations

from .bundle import bundle_to_zip_bytes, load_reference, save_reference
from .core import DEFAULT_REFERENCE_DIR, DEMO_QUERY_PATH, PACKAGE_DATA, SCHEMA_VERSION, Reference
from .resolve import load_default_reference, resolve_reference

__all__ = [
    "Reference",
    "save_reference",
    "load_reference",
    "load_default_reference",
    "resolve_reference",
    "bundle_to_zip_bytes",
    "DEFAULT_REFERENCE_DIR",
    "DEMO_QUERY_PATH",
    "PACKAGE_DATA",
    "SCHEMA_VERSION",
]
