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


# --- the public face's contract (issue 20 part B) ----------------------------------------------
#: Face functions whose docstring is still being completed elsewhere, with who does it. The
#: test fails when an entry is no longer needed, so the list only shrinks.
DOCSTRING_PENDING: dict[str, str] = {}


def _face_functions() -> dict[str, object]:
    """Every public function of ``import scembed_core as se``: its ``__all__``, and the
    ``__all__`` of each namespace on it (``se.tl``, ``se.pl``, ``se.pp`` when present)."""
    import importlib
    import inspect

    import scembed_core as se

    found: dict[str, object] = {}
    spaces = [se] + [getattr(se, n) for n in ("tl", "pl", "pp") if n in se.__all__]
    for space in spaces:
        for name in space.__all__:
            obj = getattr(space, name)
            if inspect.ismodule(obj):
                continue
            if inspect.isfunction(obj):
                found[f"{space.__name__}.{name}"] = obj
    assert importlib.import_module("scembed_core.pl") is se.pl
    return found


def _numpy_sections(doc: str) -> dict[str, str]:
    """A numpy docstring's sections by title (``Parameters``, ``Returns``, ...)."""
    lines = doc.splitlines()
    sections: dict[str, list[str]] = {}
    current = None
    for i, line in enumerate(lines):
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and set(underline.strip()) == {"-"} and len(underline.strip()) >= 3:
            current = line.strip()
            sections[current] = []
        elif current is not None and set(line.strip()) != {"-"}:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def _documented_parameters(section: str) -> set[str]:
    names: set[str] = set()
    for line in section.splitlines():
        if line and not line.startswith(" "):
            for part in line.split(" : ")[0].split(","):
                names.add(part.strip().lstrip("*"))
    return names


def _docstring_gaps(func: object) -> list[str]:
    import inspect

    doc = inspect.getdoc(func) or ""
    sections = _numpy_sections(doc)
    gaps = [f"no {s} section" for s in ("Parameters", "Returns") if s not in sections]
    params = {
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    missing = params - _documented_parameters(sections.get("Parameters", ""))
    if params and missing:
        gaps.append(f"parameters not documented: {sorted(missing)}")
    return gaps


def test_every_public_function_of_the_face_has_a_full_numpy_docstring():
    functions = _face_functions()
    assert {"scembed_core.read", "scembed_core.pl.query", "scembed_core.tl.project"} <= set(
        functions
    )
    gaps = {name: _docstring_gaps(f) for name, f in functions.items()}
    failing = {name: g for name, g in gaps.items() if g and name not in DOCSTRING_PENDING}
    assert failing == {}
    stale = {name for name in DOCSTRING_PENDING if not gaps.get(name)}
    assert stale == set(), "complete now: drop them from DOCSTRING_PENDING"
    for name in ("scembed_core.read", "scembed_core.load_reference", "scembed_core.write"):
        assert "Examples" in _numpy_sections(functions[name].__doc__ or ""), name


def test_the_face_has_no_kwargs_pass_through():
    import inspect

    for name, func in _face_functions().items():
        kinds = {p.kind for p in inspect.signature(func).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, name


def test_the_docstring_checker_finds_gaps():
    def complete(a: int, b: int = 0) -> int:
        """Add.

        Parameters
        ----------
        a, b
            Numbers.

        Returns
        -------
        int
            The sum.
        """
        return a + b

    def thin(a: int, c: int) -> int:
        """Add.

        Parameters
        ----------
        a : int
            A number.
        """
        return a + c

    assert _docstring_gaps(complete) == []
    assert _docstring_gaps(thin) == ["no Returns section", "parameters not documented: ['c']"]


def test_py_typed_is_shipped():
    import tomllib

    assert (ROOT / "scembed_core" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["scembed_core"]


def test_ruff_docstring_and_annotation_rules_hold_for_the_engine():
    import tomllib

    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert {"D", "ANN"} <= set(lint["select"])
    assert lint["pydocstyle"]["convention"] == "numpy"
    exempt = {p for p, rules in lint["per-file-ignores"].items() if {"D", "ANN"} & set(rules)}
    engine_exempt = {p for p in exempt if p.startswith("scembed_core")}
    assert engine_exempt == set(), "every engine file keeps the docstring and type rules"
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "scembed_core"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_the_engine_draws_only_in_pl_and_never_imports_streamlit(report):
    external = report["external"]
    engine = {m: set(e) for m, e in external.items() if m.startswith("scembed_core")}
    assert {"plotly"} <= engine["scembed_core.pl.maps"]  # the checker sees third-party imports
    assert not any("streamlit" in e for e in engine.values())
    drawing = {m for m, e in engine.items() if "plotly" in e}
    assert {
        m for m in drawing if m != "scembed_core.pl" and not m.startswith("scembed_core.pl.")
    } == set()
    assert "plotly" not in engine["scembed_core.pl.palette"]  # colours need no plotly


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
