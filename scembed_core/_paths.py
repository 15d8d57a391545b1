"""Where the package's data lives (no imports beyond pathlib, so anything may use it)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"

DEFAULT_REFERENCE_DIR = PACKAGE_DATA / "default_reference"

DEMO_QUERY_PATH = PACKAGE_DATA / "demo_query.h5ad"
