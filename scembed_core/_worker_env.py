"""Imported first in the Dask workers' forkserver: one numba thread per worker process.

:func:`scembed_core.atlas.project_out_of_core` starts its local workers from a forkserver
that has imported the chunk code once (numba, pandas, the kernels), so each worker forks
from it instead of importing everything again. numba reads ``NUMBA_NUM_THREADS`` when it is
imported, so it is set here, before, as the spawned workers get it from their environment.
"""

import os

os.environ["NUMBA_NUM_THREADS"] = "1"
