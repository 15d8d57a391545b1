"""Give the memory a script run freed back to the operating system.

CPython and numpy allocate arrays under glibc's ``mmap`` threshold (up to 32 MiB once it has
grown) on the C heap, and glibc keeps a freed heap for reuse: after a projection or a dataset
load the server's resident memory stays at its peak although the objects are gone (measured
with ``benchmarks.cold``: about 20-40 MiB per step after the 3,790-cell flow). On a hosted
server whose memory limit counts resident memory, that is memory no other visitor can use.
:func:`release_freed_memory` asks glibc to return it (``malloc_trim(0)``; ~1 ms when there is
nothing to return, ~70 ms for ~450 MiB); elsewhere (macOS, musl) it does nothing.

The garbage collector's part: Streamlit collects every generation after every script run
(``runner.postScriptGC``), walking every tracked object of the process, the libraries and the
built-in reference included: 0.1-0.3 s holding the GIL at the end of each run (py-spy on a
"Project cells" click, 2026-12-05), the server's messages to the browser waiting behind it.
:func:`refreeze` moves what is alive into the collector's permanent generation, which that
walk skips; reference counting still frees frozen objects, but frozen garbage in a reference
cycle (an AnnData is one: ``adata.obsm._parent is adata``) waits for the next
:func:`refreeze`. The server calls it after its background warm-up and then every
:data:`REFREEZE_EVERY_S` seconds (:func:`keep_refreezing`).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import threading
import time
from collections.abc import Callable

__all__ = ["REFREEZE_EVERY_S", "keep_refreezing", "refreeze", "release_freed_memory"]

#: Seconds between two :func:`refreeze` calls of a server: frozen garbage in a reference cycle
#: lives at most this long; each call walks everything once (0.1-0.3 s).
REFREEZE_EVERY_S = 600.0

_refreezer: list[threading.Thread] = []
_refreezer_lock = threading.Lock()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return freed heap memory to the operating system (glibc); whether it could be asked.

    Called by the router at the end of every script run, after the page is sent.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def refreeze() -> None:
    """Collect all garbage, frozen objects' included, then freeze what is still alive."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def keep_refreezing(every: float = REFREEZE_EVERY_S) -> threading.Thread:
    """Call :func:`refreeze` every ``every`` seconds from now on (one daemon thread a process)."""

    def loop() -> None:
        while True:
            time.sleep(every)
            refreeze()

    with _refreezer_lock:
        if not _refreezer:
            thread = threading.Thread(target=loop, name="scembed-refreeze", daemon=True)
            thread.start()
            _refreezer.append(thread)
        return _refreezer[0]
