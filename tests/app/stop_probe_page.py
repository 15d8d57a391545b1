"""A Streamlit script for test_hostile_stop_browser: a 3e9-epoch EV-projection in a page.

It runs the engine's kernel under :func:`scembed_app.stopping.stoppable`, exactly as the
router runs every page, and records in ``$SCEMBED_STOP_PROBE`` what happened to it.
"""

import os
from pathlib import Path

import numpy as np
import streamlit as st

from scembed_app.stopping import stoppable
from scembed_core.errors import Cancelled
from scembed_core.evmap import MapParams, transform

marker = Path(os.environ["SCEMBED_STOP_PROBE"])
st.write("Projecting for ever...")
rng = np.random.default_rng(0)
ref = rng.normal(size=(60, 2)).astype(np.float32)
indices = np.stack([rng.choice(60, 15, replace=False) for _ in range(40)])
distances = np.sort(rng.uniform(0.05, 0.5, size=(40, 15)), axis=1)
marker.write_text("running")
try:
    with stoppable():
        transform(indices, distances, ref, MapParams(a=1.577, b=0.895), n_epochs=3_000_000_000)
    marker.write_text("finished")
except Cancelled as exc:
    marker.write_text(f"cancelled: {exc}")
