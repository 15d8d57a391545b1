"""Small types shared by the engine's modules (imports nothing of the engine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

__all__ = ["ProgressCallback"]

#: ``progress(fraction, message)``: ``fraction`` in [0, 1] of the call's work done so far,
#: ``message`` a short description of the current stage. Long engine calls accept one;
#: the command line draws it as a terminal bar, the app as ``st.progress``.
ProgressCallback: TypeAlias = Callable[[float, str], None]
