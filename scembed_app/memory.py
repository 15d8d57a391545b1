"""Give the memory a script run freed back to the operating system.

CPython and numpy allocate arrays under glibc's ``mmap`` threshold (up to 32 MiB once it has
grown) on the C heap, and glibc keeps a freed heap for reuse: after a projection or a dataset
load the server's resident memory stays at its peak although the objects are gone (measured
with ``benchmarks.cold``: about 20-40 MiB per step after the 3,790-cell flow). On a hosted
server whose memory limit counts resident memory, that is memory no other visitor can use.
:func:`release_freed_memory` asks glibc to return it (``malloc_trim(0)``; ~1 ms when there is
nothing to return, ~70 ms for ~450 MiB); elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

__all__ = ["release_freed_memory"]


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
