"""The house's structure rules, checked on the source by scripts/import_graph.py.

No import cycle in the engine or the app (function-level imports included), no private name
imported across modules, and no engine module over 500 lines except those listed below.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

#: The repository root (this file may sit in tests/ or in tests/core/).
ROOT = next(
    p for p in Path(__file__).resolve().parents if (p / "scripts" / "import_graph.py").is_file()
)
SCRIPT = ROOT / "scripts" / "import_graph.py"
MAX_LINES = 500
#: Engine modules allowed over MAX_LINES, each with the reason. Remove an entry when its
#: module is split; the test fails if an entry is no longer needed.
LONG_MODULE_EXCEPTIONS: dict[str, str] = {}


def load_script():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report() -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--json"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_the_graph_covers_both_packages(report):
    modules = report["modules"]
    assert {"scembed_core", "scembed_core.io.read", "scembed_core.hub.card"} <= set(modules)
    assert {"scembed_app.cached", "scembed_app.state"} <= set(modules)
    # function-level imports are edges too
    resolve = report["edges"]["scembed_core.reference.resolve"]
    assert {"scembed_core.hub", "scembed_core.formats.geniml"} <= set(resolve)


def test_no_import_cycle(report):
    assert report["cycles"] == []


def test_no_private_name_imported_across_modules(report):
    assert report["private_imports"] == []


def test_engine_modules_are_at_most_500_lines(report):
    engine = {n: k for n, k in report["modules"].items() if n.startswith("scembed_core")}
    too_long = {n: k for n, k in engine.items() if k > MAX_LINES}
    assert set(too_long) - set(LONG_MODULE_EXCEPTIONS) == set(), too_long
    stale = {n for n in LONG_MODULE_EXCEPTIONS if engine.get(n, 0) <= MAX_LINES}
    assert stale == set(), f"no longer over {MAX_LINES} lines: drop them from the exceptions"


def test_the_checker_finds_hidden_cycles_and_private_imports(tmp_path):
    """A planted package: a cycle through a function-level relative import, a private name
    imported and one used as an attribute, and a TYPE_CHECKING import that is no cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    return b.g()\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..c import _hidden\n    return _hidden\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nimport pkg.d as d\n\n"
        "if TYPE_CHECKING:\n    from .a import f\n\n_hidden = 1\n\n"
        "def h():\n    from . import a\n    return a, d._secret\n"
    )
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .c import h\n_secret = 2\n")  # fmt: skip
    graph = load_script().report(tmp_path, ("pkg",))
    assert graph["cycles"] == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert graph["edges"]["pkg.d"] == []  # TYPE_CHECKING only
    assert sorted(p["name"] for p in graph["private_imports"]) == ["pkg.c._hidden", "pkg.d._secret"]


# --------------------------------------------------------------------------- rooms
ENGINE = ROOT / "scembed_core"


def test_one_labels_package_whose_docstring_names_every_file():
    for old in ("annotate", "labeling", "label_model", "calibration"):
        assert not (ENGINE / f"{old}.py").exists(), f"scembed_core/{old}.py: labels/ owns it"
    package = ENGINE / "labels"
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
    rooms = sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    assert {"vote", "assign", "classifier", "calibration", "clusters"} <= set(rooms)
    unnamed = [r for r in rooms if f":mod:`.{r}`" not in doc and f"``{r}.py``" not in doc]
    assert unnamed == [], "say in labels/__init__.py which rule each file owns"


def test_app_session_storage_is_not_in_the_engine():
    assert not (ENGINE / "workspace").exists()
    assert (ROOT / "scembed_app" / "workspace" / "__init__.py").is_file()


#: Engine modules whose functions compute a stage (project, graph, clusters, labels) or
#: write results: pages reach them through ``se.tl`` via the app's cache layer.
STAGE_MODULES = {
    "scembed_core.project",
    "scembed_core.cluster",
    "scembed_core.knn",
    "scembed_core.pipeline",
    "scembed_core.results",
    "scembed_core.labels.assign",
    "scembed_core.labels.classifier",
    "scembed_core.labels.vote",
    "scembed_core.labels.clusters",
}


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from module import name`` and ``import module`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def test_pages_reach_the_stages_through_tl_and_the_cache_layer():
    offending = [
        f"{page.name}: {module}.{name}"
        for page in sorted((ROOT / "pages").glob("*.py"))
        for module, name in _imports(page)
        if module in STAGE_MODULES and not name.isupper()  # constants (UNASSIGNED) are fine
    ]
    assert offending == []


def test_the_app_clusters_with_the_tl_verbs():
    cached = ROOT / "scembed_app" / "cached.py"
    from_cluster = {name for module, name in _imports(cached) if module == "scembed_core.cluster"}
    assert from_cluster <= {"n_clusters_of", "ResolutionSearch"}, from_cluster
    assert ("scembed_core", "tl") in _imports(cached)
