"""Progress in stages: one ``progress(fraction, message)`` callback split into named parts.

A long engine call (training a reference) is a row of stages of very different lengths.
:class:`Stages` gives each stage its own callback that maps the stage's ``[0, 1]`` onto its
share of the whole, prefixes the stage's title, and adds a time left measured on the stage
so far (so an estimate appears as soon as the first epoch is done and is never a
promise made before anything ran).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._types import ProgressCallback

__all__ = ["Stages", "time_left"]

#: No time left is shown before this many seconds of a stage (too early to measure).
MIN_SECONDS_FOR_ESTIMATE = 1.0


def time_left(elapsed: float, fraction: float) -> str:
    """``"about 40 s left"`` (or minutes) from the time a stage took for ``fraction`` of it.

    Parameters
    ----------
    elapsed
        Seconds spent on the stage so far.
    fraction
        Fraction of the stage done, in ``(0, 1]``.

    Returns
    -------
    str
        The estimate, or ``""`` when nothing can be measured yet.
    """
    if fraction <= 0 or fraction >= 1 or elapsed < MIN_SECONDS_FOR_ESTIMATE:
        return ""
    left = elapsed * (1 - fraction) / fraction
    if left >= 90:
        return f"about {left / 60:.0f} min left"
    return f"about {max(left, 1):.0f} s left"


class Stages:
    """Named stages sharing one progress callback in proportion to their weights.

    Parameters
    ----------
    report
        The caller's callback (None: progress is dropped).
    weights
        ``{name: (weight, title)}`` in order; a stage that never runs is skipped (the
        bar jumps over its share).
    clock
        Seconds clock (tests pass their own).
    """

    def __init__(
        self,
        report: ProgressCallback | None,
        weights: dict[str, tuple[float, str]],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.report = report or (lambda fraction, message: None)
        total = float(sum(weight for weight, _ in weights.values())) or 1.0
        self.spans: dict[str, tuple[float, float, str]] = {}
        start = 0.0
        for name, (weight, title) in weights.items():
            self.spans[name] = (start / total, weight / total, title)
            start += weight
        self.clock = clock

    def stage(self, name: str, message: str = "") -> ProgressCallback:
        """Start stage ``name`` (reported at once with ``message``) and return its callback.

        The callback takes the stage's own ``(fraction, message)``; the message shown is
        ``"<title>: <message> (about N s left)"``.
        """
        from .stopping import check_stop

        start, span, title = self.spans[name]
        check_stop(title or "The computation")  # between stages: a stopped run ends here
        began = self.clock()

        def update(fraction: float, text: str) -> None:
            fraction = min(max(float(fraction), 0.0), 1.0)
            left = time_left(self.clock() - began, fraction)
            body = f"{title}: {text}" if text else title
            self.report(start + span * fraction, f"{body}, {left}" if left else body)

        update(0.0, message)
        return update

    def done(self, message: str) -> None:
        """Report the whole call as finished."""
        self.report(1.0, message)
