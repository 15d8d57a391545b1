"""The package version (one place, imported by the public face and the bundle writer)."""

__version__ = "0.1.0"
