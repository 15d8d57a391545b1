"""Markdown helpers: tables, numbers, machine facts, and the marked sections of BENCHMARKS.md.

``BENCHMARKS.md`` has one section per command, fenced by marker comments
(``<!-- BEGIN bench -->`` ... ``<!-- END bench -->``). A command rewrites its own section
and leaves the others as they are, so ``make bench``, ``make bench-peers`` and
``make bench-scale`` can run in any order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
FIGURES = BENCH_DIR / "figures"
RESULTS = BENCH_DIR / "results"
REPORT = ROOT / "BENCHMARKS.md"

#: Section order in BENCHMARKS.md and the command that fills each.
SECTIONS = {
    "bench": "make bench",
    "bench-lsi": "make bench",
    "bench-peers": "make bench-peers",
    "bench-scale": "make bench-scale",
    "bench-atlas": "make bench-atlas",
    "bench-sessions": "make bench-sessions",
    "bench-liftover": "python -m benchmarks.liftover",
    "bench-ev-transform": "python -m benchmarks.ev_transform --cells 300000",
    "bench-labels": "python -m benchmarks.labels",
    "bench-import-time": "python -m benchmarks.import_time",
    "bench-workspace": "make bench-workspace",
    "bench-cold": "make bench-cold",
    "bench-cold-cpu": "python -m benchmarks.cold --cpu-only",
    "classifier-threads": "python -m benchmarks.classifier_threads",
}

TITLE = """# Benchmarks

Measured numbers for the scEmbed engine (`scembed_core`) and app. Every table below was
written by the command printed just above it (one section, marked, was copied by hand from
its command's output). Each command fills its own section, stamped with its own date and
machine:

- `make bench` (< 30 min on 2 cores): quality on the real Granja 2019 bone-marrow data
  (clustering, dropout, projection vs native, label transfer) and speed/memory.
- `make bench-peers`: the same tasks for SnapATAC2 and the predecessor geniml, installed in
  a separate virtual environment (`benchmarks/.venv-peers`).
- `make bench-scale`: projection time and memory at 10k, 100k and 1M cells.
- `make bench-atlas`: the out-of-core Dask path on 1M cells (time, memory per worker).
- `make bench-sessions`: server memory with eight browser sessions projecting at once.
- `python -m benchmarks.liftover`: loading the hg38 -> hg19 chain and lifting 200,000 peaks.
- `python -m benchmarks.import_time`: start-up import time with and without Dask installed.
- `make bench-workspace`: restoring a saved 3,790-cell analysis from its workspace, and its size.
- `make bench-cold`: a fresh server's first chart, a reload and "Project cells" in a real
  browser, against a one-chart Streamlit app (the floor) in the same run.

Figures are in `benchmarks/figures/`, raw numbers as JSON in `benchmarks/results/`.
"""

LIBRARIES = (
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "gensim",
    "scikit-learn",
    "igraph",
    "chroma-hnswlib",
    "umap-learn",
    "numba",
    "streamlit",
    "intervaltree",
    "matplotlib",
)


# --------------------------------------------------------------------------- numbers


def fmt(value, digits: int = 3) -> str:
    """A number for a table: fixed digits, thousands separators for big ones, '–' for None/NaN."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    value = float(value)
    if not np.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± sd`` over seeds (sample sd); a single value is printed alone."""
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def seconds(value: float | None) -> str:
    """Seconds with sensible precision."""
    if value is None or not np.isfinite(value):
        return "–"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 10:
        return f"{value:.2f} s"
    return f"{value:,.1f} s"


def gib(nbytes: float | None) -> str:
    """Bytes as GiB (or MiB below 1 GiB)."""
    if nbytes is None or not np.isfinite(nbytes):
        return "–"
    if nbytes < 2**30:
        return f"{nbytes / 2**20:,.0f} MiB"
    return f"{nbytes / 2**30:.2f} GiB"


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``12.3×``, or '–' when either side is missing."""
    if not numerator or not denominator or not np.isfinite(numerator / denominator):
        return "–"
    value = numerator / denominator
    return f"{value:,.0f}×" if value >= 100 else f"{value:.1f}×"


# --------------------------------------------------------------------------- markdown


def table(rows: Iterable[Sequence], header: Sequence[str], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one character per column (l, r, c)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def command(text: str) -> str:
    """A fenced shell block holding the exact command that produced what follows."""
    return f"```bash\n{text}\n```"


def figure(path: Path, alt: str) -> str:
    """Markdown image link relative to the repository root."""
    return f"![{alt}]({path.relative_to(ROOT).as_posix()})"


# --------------------------------------------------------------------------- facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return ", ".join(
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
            f"{i.get('num_threads')} threads)"
            for i in infos[:1]
        )
    except Exception:  # noqa: BLE001 - facts are best effort
        return "unknown"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"
    except OSError:
        return "unknown"


def versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the named distributions."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine_facts() -> dict:
    """CPU, cores, RAM, Python and library versions, date, load: what a reader needs."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_bytes": _ram_bytes(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "blas": _blas(),
        "git": _git(),
        "load_average": [round(x, 2) for x in load],
        "versions": versions(),
    }


def facts_block(facts: dict, *, extra_versions: dict[str, str] | None = None) -> str:
    """Machine facts as a short bullet list."""
    libs = {**facts["versions"], **(extra_versions or {})}
    lib_text = ", ".join(f"{k} {v}" for k, v in libs.items())
    return "\n".join(
        [
            f"- **Date:** {facts['date']}; code at commit {facts['git']}.",
            f"- **CPU:** {facts['cpu']}, {facts['cores']} cores; "
            f"**RAM:** {gib(facts['ram_bytes'])}; {facts['platform']}.",
            f"- **Python** {facts['python']}; BLAS: {facts['blas']}.",
            f"- **Libraries:** {lib_text}.",
            f"- **Load average at start:** {', '.join(str(x) for x in facts['load_average'])} "
            "(1/5/15 min). Other jobs (test suites of other developers) shared this 2-core "
            "machine during the run, so timings are noisy: compare ratios measured in the same "
            "run, not absolute seconds across runs.",
        ]
    )


# --------------------------------------------------------------------------- the file


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def _placeholder(name: str) -> str:
    return f"_This section is filled by `{SECTIONS[name]}`, which has not been run yet._"


def replace_section(name: str, body: str, path: Path = REPORT) -> Path:
    """Rewrite the ``name`` section of ``BENCHMARKS.md``, keeping everything else verbatim.

    Only the text between the section's own markers changes: sections written by hand or
    by benchmarks not listed in :data:`SECTIONS`, and prose between sections, stay as they
    are. A section the file lacks is appended; a missing file is created with the title
    and placeholders for the listed sections.
    """
    if name not in SECTIONS:
        raise ValueError(f"Unknown section {name!r}; expected one of {list(SECTIONS)}.")
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    if not path.exists():
        parts = [TITLE.strip()]
        for section in SECTIONS:
            first, last = _markers(section)
            content = body.strip() if section == name else _placeholder(section)
            parts.append(f"{first}\n{content}\n{last}")
        path.write_text("\n\n".join(parts) + "\n")
        return path
    existing = path.read_text()
    pattern = re.compile(re.escape(begin) + r"\n.*?\n" + re.escape(end), re.S)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: block, existing, count=1)
    else:
        updated = existing.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(updated)
    return path


def save_results(name: str, results: dict) -> Path:
    """Write raw results as JSON under ``benchmarks/results``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=1, default=_plain))
    return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)
