"""Wire the engine's stop hook to Streamlit: a rerun or a closed tab ends the work.

Streamlit stops a script only at its own calls (``st.*``), which a numba kernel or a long
engine loop never makes. :func:`stoppable` gives the engine (:mod:`scembed_core.stopping`)
a hook that reads the script run's pending requests (a rerun, or a stop when the tab was
closed or the session ended), and a time budget per run: ``SCEMBED_RUN_SECONDS`` (default
600 s on a public deployment, none locally). Work stopped this way raises
:class:`~scembed_core.errors.Cancelled`, which the pages show like any engine error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from scembed_core.stopping import stop_when

from .deployment import is_hosted

#: The time budget of one script run on a public deployment, in seconds.
HOSTED_RUN_SECONDS = 600.0


def script_stop_hook() -> Callable[[], bool] | None:
    """A hook telling whether this script run was asked to stop or rerun (None outside one).

    The hook captures the run's request queue, so a watcher thread may call it.
    """
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    requests = getattr(ctx, "script_requests", None)
    if requests is None:
        return None

    def asked() -> bool:
        state = getattr(requests, "_state", None)  # ScriptRequestType: CONTINUE, RERUN, STOP
        return state is not None and getattr(state, "name", "CONTINUE") != "CONTINUE"

    return asked


def run_seconds() -> float | None:
    """The time budget of one run: ``SCEMBED_RUN_SECONDS``, else 600 s hosted, else none."""
    text = os.environ.get("SCEMBED_RUN_SECONDS", "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        return value if value > 0 else None
    return HOSTED_RUN_SECONDS if is_hosted() else None


@contextmanager
def stoppable() -> Iterator[None]:
    """Run the block so that the engine's long work stops with the script run."""
    with stop_when(script_stop_hook(), seconds=run_seconds()):
        yield
