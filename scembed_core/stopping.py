"""Work that can be stopped: a stop hook and a time budget that long kernels honour.

The engine never imports Streamlit. A caller (the app, a server) says when work should stop
with :func:`stop_when`; long kernels call :func:`check_stop` between epochs or chunks, and
numba kernels that run for long get a one-element flag that :func:`watch` raises from a
watcher thread, checked by the kernel between epochs. Either way the work ends with
:class:`~scembed_core.errors.Cancelled`.

The hook and the deadline are context variables: each thread (e.g. each app session's
script thread) has its own, and work started without :func:`stop_when` never stops early.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from .errors import Cancelled

__all__ = ["also_stop_when", "check_stop", "should_stop", "stop_asker", "stop_when", "watch"]

_HOOK: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "scembed_stop_hook", default=None
)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "scembed_stop_deadline", default=None
)


@contextmanager
def stop_when(
    hook: Callable[[], bool] | None = None, *, seconds: float | None = None
) -> Iterator[None]:
    """Make the engine's long work in this context stop when ``hook()`` is true or time is up.

    Parameters
    ----------
    hook
        Called (from any thread, often) to ask whether to stop; must be cheap.
    seconds
        Time budget of the work from now (None: no budget).

    Yields
    ------
    None
        Inside the block, :func:`check_stop` and :func:`watch` honour the hook and budget.
    """
    deadline = None if seconds is None else time.monotonic() + float(seconds)
    tokens = (_HOOK.set(hook), _DEADLINE.set(deadline))
    try:
        yield
    finally:
        _HOOK.reset(tokens[0])
        _DEADLINE.reset(tokens[1])


@contextmanager
def also_stop_when(hook: Callable[[], bool]) -> Iterator[None]:
    """Add a stop hook to this context's, keeping its hook and time budget.

    Parameters
    ----------
    hook
        Stop as soon as this returns true, or as the enclosing :func:`stop_when` says.

    Yields
    ------
    None
        Inside the block, :func:`check_stop` honours both hooks and the time budget.
    """
    outer = _HOOK.get()
    token = _HOOK.set(lambda: hook() or (outer is not None and outer()))
    try:
        yield
    finally:
        _HOOK.reset(token)


def _reason(hook: Callable[[], bool] | None, deadline: float | None) -> str | None:
    if deadline is not None and time.monotonic() > deadline:
        return "it ran past its time budget"
    if hook is not None and hook():
        return "it was stopped (the page was closed or rerun)"
    return None


def should_stop() -> bool:
    """Whether work in this context should stop now.

    Returns
    -------
    bool
        True when the hook of :func:`stop_when` says so or its time budget is spent.
    """
    return _reason(_HOOK.get(), _DEADLINE.get()) is not None


def stop_asker() -> Callable[[], bool]:
    """Capture this context's stop question as a function that any thread may call.

    Context variables do not follow work into the threads a library starts (gensim's job
    producer, a watcher): capture the question here and ask it there.

    Returns
    -------
    Callable[[], bool]
        True once the hook of :func:`stop_when` says so or its time budget is spent;
        always False when this context has neither.
    """
    hook, deadline = _HOOK.get(), _DEADLINE.get()
    return lambda: _reason(hook, deadline) is not None


def check_stop(what: str = "The computation") -> None:
    """Raise :class:`~scembed_core.errors.Cancelled` if work in this context should stop.

    Parameters
    ----------
    what
        The work, for the message.

    Raises
    ------
    Cancelled
        The hook asked to stop, or the time budget is spent.
    """
    reason = _reason(_HOOK.get(), _DEADLINE.get())
    if reason is not None:
        raise Cancelled(f"{what} did not finish: {reason}.")


@contextmanager
def watch(what: str = "The computation", interval: float = 0.05) -> Iterator[np.ndarray]:
    """Give a stop flag to a kernel that does not return to Python until it is done.

    Parameters
    ----------
    what
        The work, for the message.
    interval
        Seconds between two looks at the hook.

    Yields
    ------
    numpy.ndarray
        A one-element int64 array, 0 until a watcher thread sets it to 1 (hook true or
        time up). Pass it to the kernel, which checks it between epochs; the kernel must
        release the GIL (``nogil=True``) for the watcher to run.

    Raises
    ------
    Cancelled
        After the block, when the flag was raised.
    """
    flag = np.zeros(1, dtype=np.int64)
    hook, deadline = _HOOK.get(), _DEADLINE.get()
    done = threading.Event()
    reason: list[str] = []

    def look() -> None:
        while not done.wait(interval):
            why = _reason(hook, deadline)
            if why is not None:
                reason.append(why)
                flag[0] = 1
                return

    watcher = None
    if hook is not None or deadline is not None:
        check_stop(what)
        watcher = threading.Thread(target=look, name="scembed-stop-watch", daemon=True)
        watcher.start()
    try:
        yield flag
    finally:
        done.set()
        if watcher is not None:
            watcher.join()
    if flag[0]:
        raise Cancelled(f"{what} did not finish: {reason[0] if reason else 'stopped'}.")
