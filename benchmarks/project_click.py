"""The "Project cells" click on the demo, in the app's own script run (Streamlit's AppTest).

Run with ``python -m benchmarks.project_click --repeats 3``. Each repeat is a fresh Python
process: the app opens on its Reference page (which starts the server's background
warm-ups, as a real server does after the first page), the demo dataset is loaded on the
Data page, the Project page is opened, the warm-ups are waited for (a user reads the page
first), and then "Project cells" is clicked. Measured from the click to the end of the
script run that draws the map: wall seconds, CPU seconds of the whole process (every
thread), the page's own stage times, and the load average. No browser: the figure is built
and serialised as for a browser, but not sent or painted (``make bench-cold`` measures that).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_click() -> dict:
    """Open the app, load the demo, click "Project cells" once; the measurements."""
    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from apptest_tools import button, checked, goto
    from streamlit.testing.v1 import AppTest

    from scembed_app import cached, quickref, state

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    checked(at.run())
    goto(at, state.PAGE_DATA)
    checked(button(at, "Load demo dataset").click().run())
    goto(at, state.PAGE_PROJECT)
    for thread in (cached.start_kernel_warmup(), quickref.start_projection_warmup()):
        if thread is not None:
            thread.join()
    wall, cpu = time.perf_counter(), time.process_time()
    checked(button(at, "Project cells").click().run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    run = at.session_state[state.PROJECTION]
    assert run is not None and run.projection.umap is not None and at.get("plotly_chart")
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "stages_s": dict(run.stage_seconds or {}),
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    """Run ``--repeats`` fresh processes and print each and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_click()))
        return 0
    rows = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for _ in range(args.repeats):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.project_click", "--one"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    wall = statistics.median(r["wall_s"] for r in rows)
    cpu = statistics.median(r["cpu_s"] for r in rows)
    loads = ", ".join(f"{r['load_average']:.1f}" for r in rows)
    print(f"median wall {wall:.2f} s, median CPU {cpu:.2f} s (load averages {loads})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
