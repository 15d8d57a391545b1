"""Adapters from the engine's ``progress(fraction, message)`` callback to Streamlit.

The engine never imports Streamlit; long engine calls accept a callback instead. These
adapters turn it into an ``st.progress`` bar, and time the stages shown in ``st.status``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from streamlit.delta_generator import DeltaGenerator

from scembed_core._types import ProgressCallback


def progress_bar(bar: DeltaGenerator, *, prefix: str = "") -> ProgressCallback:
    """A callback that moves ``bar`` (from ``st.progress``) and shows the message."""

    def update(fraction: float, message: str) -> None:
        value = min(max(float(fraction), 0.0), 1.0)
        bar.progress(value, text=f"{prefix}{message}")

    return update


class StageTimer:
    """Runs named stages inside an ``st.status`` container, one line per stage.

    Example
    -------
    >>> with st.status("Projecting", expanded=True) as status:
    ...     stages = StageTimer(status)
    ...     with stages.stage("Map peaks"):
    ...         ...
    """

    def __init__(self, status: DeltaGenerator) -> None:
        self.status = status
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, label: str, *, detail: str = "") -> Iterator[None]:
        """Show ``label`` as running, run the block, then record its duration."""
        self.status.update(label=f"{label}...", state="running")
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.seconds[label] = seconds
        suffix = f" ({detail})" if detail else ""
        self.status.write(f":material/check: {label}{suffix}: {seconds:.1f} s")

    @property
    def total(self) -> float:
        """Seconds spent in all stages so far."""
        return sum(self.seconds.values())
