"""One engine call run in a thread beside the caller's own work, its progress replayed later.

A reference build fits its map (a serial layout on one core) while the caller fits the
label classifier and the Unknown rule on the other: the two need nothing of each other, and
each gives the same result as when run alone. :class:`Background` runs the call in a copy
of the caller's context (so :func:`~scembed_core.stopping.check_stop` in it honours the
caller's stop hook and time budget), queues its progress reports instead of calling the
caller's callback from another thread (a Streamlit progress bar must be updated from its
script thread): :meth:`Background.latest` says where it is (the caller shows it beside its
own work), and :meth:`Background.result` replays every queued report in order, then returns
its result or raises its exception. :meth:`Background.abandon` stops it (its
next ``check_stop`` raises) when the caller's own work failed.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

from ._types import ProgressCallback
from .stopping import also_stop_when

__all__ = ["Background"]

#: Seconds between two looks at the thread while waiting for it.
_POLL_S = 0.1


class Background:
    """Run ``func(*args, progress=..., **kwargs)`` in a thread now; collect it later.

    Parameters
    ----------
    func
        The call; it must take a ``progress`` keyword (a ``(fraction, message)`` callback)
        and should call :func:`~scembed_core.stopping.check_stop` between its steps.
    *args, **kwargs
        Its arguments.
    name
        The thread's name.
    """

    def __init__(
        self, func: Callable[..., Any], *args: Any, name: str = "scembed-background", **kwargs: Any
    ) -> None:
        self._reports: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
        self._latest: tuple[float, str] | None = None
        self._outcome_read = False
        self._abandoned = threading.Event()
        self._outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                with also_stop_when(self._abandoned.is_set):
                    value = func(*args, progress=self._record, **kwargs)
                self._outcome.append((True, value))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
                self._outcome.append((False, exc))

        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(run,), name=name, daemon=True)
        self._thread.start()

    def _record(self, fraction: float, message: str) -> None:
        self._latest = (float(fraction), str(message))
        self._reports.put(self._latest)

    def latest(self) -> str | None:
        """Return the call's last progress message (None before its first, and once collected).

        Once :meth:`result` has returned, the caller has had every report, so there is
        nothing more to show beside its own work.
        """
        latest = self._latest
        return None if latest is None or self._outcome_read else latest[1]

    def _replay(self, progress: ProgressCallback | None) -> None:
        while True:
            try:
                fraction, message = self._reports.get_nowait()
            except queue.Empty:
                return
            if progress is not None:
                progress(fraction, message)

    def result(self, progress: ProgressCallback | None = None) -> Any:
        """Wait for the call, reporting where it is as it goes; its result.

        Parameters
        ----------
        progress
            The caller's callback, called from the caller's thread with every report the
            call made, in order (first those queued so far, then new ones as they come).

        Returns
        -------
        Any
            What the call returned.

        Raises
        ------
        BaseException
            What the call raised (e.g. :class:`~scembed_core.errors.Cancelled`).
        """
        while self._thread.is_alive():
            self._replay(progress)
            self._thread.join(_POLL_S)
        self._replay(progress)
        self._outcome_read = True
        ok, value = self._outcome[0]
        if not ok:
            raise value
        return value

    def abandon(self) -> None:
        """Stop the call at its next ``check_stop`` and wait for the thread to end."""
        self._abandoned.set()
        self._thread.join()
