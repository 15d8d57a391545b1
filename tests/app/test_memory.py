"""The server gives back memory a script run freed (scembed_app.memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    """Many small arrays (on the C heap, under malloc's mmap threshold), most freed: the
    resident memory stays up until release_freed_memory() returns it."""
    code = (
        "import numpy as np\n"
        "from scembed_app.memory import release_freed_memory\n"
        "def rss():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status')\n"
        "                if l.startswith('VmRSS')) // 1024\n"
        "arrays = [np.ones(1000) for _ in range(40_000)]  # 8 kB each: ~320 MiB of heap\n"
        "kept = arrays[::50]\n"
        "del arrays\n"
        "before = rss()\n"
        "asked = release_freed_memory()\n"
        "print(asked, before, rss())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    asked, before, after = out.stdout.split()
    assert asked == "True"
    assert int(before) - int(after) > 200, (before, after)  # MiB returned


class _Cyclic:
    """An object in a reference cycle (as an AnnData is: ``adata.obsm._parent is adata``)."""

    def __init__(self) -> None:
        self.me = self


def test_refreeze_collects_frozen_garbage_in_a_cycle_and_freezes_the_rest():
    import gc
    import weakref

    from scembed_app import memory

    gc.unfreeze()
    try:
        dropped, kept = _Cyclic(), _Cyclic()
        gone = weakref.ref(dropped)
        gc.freeze()  # both frozen, as a session's data is by the warm-up's freeze
        del dropped
        gc.collect()
        assert gone() is not None, "a frozen cycle survives a full collection"
        memory.refreeze()
        assert gone() is None, "the refreeze collected it"
        assert gc.get_freeze_count() > 0 and weakref.ref(kept)() is kept
        assert memory.keep_refreezing(every=3600) is memory.keep_refreezing(), "one thread"
    finally:
        gc.unfreeze()
