"""``make bench-sessions``: server memory with eight users projecting at once.

Runs the real-browser load test (``tests/app/test_load.py``: a real ``streamlit run`` server,
eight headless-Chromium sessions uploading different slices of the demo cells and
projecting them at the same time) and writes the server's resident memory idle, at peak
and per session to the ``bench-sessions`` section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "make bench-sessions"


def main() -> None:
    facts = report.machine_facts()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/app/test_load.py",
                "-k",
                "concurrent",
            ],
            cwd=ROOT,
            env={**os.environ, "SCEMBED_LOAD_REPORT": str(out), "SCEMBED_LOAD_SESSIONS": "8"},
            check=True,
        )
        seconds = time.perf_counter() - started
        results = json.loads(out.read_text())
    mib = 2**20
    idle, peak, n = results["rss_idle_bytes"], results["rss_peak_bytes"], results["sessions"]
    rows = [
        ["idle (app open in every session)", f"{idle / mib:.0f} MiB"],
        ["peak (all projected, labels shown)", f"{peak / mib:.0f} MiB"],
        ["growth per session", f"{(peak - idle) / n / mib:.0f} MiB"],
    ]
    body = "\n\n".join(
        [
            "## `make bench-sessions`: one server, eight users at once",
            report.command(COMMAND),
            f"{n} headless-Chromium sessions on one `streamlit run` server upload slices of "
            f"{', '.join(map(str, results['cells_per_session']))} demo cells and project them "
            "at the same time; each then sees only its own cells and labels (the test asserts "
            f"it). Server resident memory (the server process and its children), in a run of "
            f"{seconds:.0f} s:",
            report.table(rows, ["server RSS", "value"]),
            report.facts_block(facts),
        ]
    )
    report.save_results("sessions", results)
    report.replace_section("bench-sessions", body)


if __name__ == "__main__":
    main()
