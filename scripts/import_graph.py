"""The import graph of the engine and the app: cycles, private names across modules, long modules.

Every ``import`` and ``from ... import`` statement is read from the source (with :mod:`ast`,
nothing is imported), wherever it stands: at module level or inside a function, where a
cycle can hide. Relative imports are resolved; ``from package import name`` is an edge to
``package.name`` when that is a module, else to ``package``. Imports under
``if TYPE_CHECKING:`` are left out: they never run, so they cannot form a runtime cycle.
Strongly connected components (Tarjan) of more than one module, or a module importing
itself, are the cycles. Imports of other packages are listed per module by their top-level
name (``external``), so that a rule such as "the engine imports plotly only in
``scembed_core.pl``" can be checked.

Usage::

    python scripts/import_graph.py            # summary; exit status 1 if there is a cycle
    python scripts/import_graph.py --json     # everything as JSON (used by tests/core/test_structure.py)
    python scripts/import_graph.py --edges    # also print every edge
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("scembed_core", "scembed_app")


@dataclass
class Module:
    """One source file: its dotted name, path, line count and what it imports."""

    name: str
    path: Path
    is_package: bool
    n_lines: int
    imports: list[tuple[str, list[str], int]] = field(default_factory=list)  # (target, names, line)
    module_aliases: dict[str, str] = field(default_factory=dict)  # local name -> module
    private_attributes: list[tuple[str, str, int]] = field(default_factory=list)
    external: set[str] = field(default_factory=set)  # top-level names of other packages


def discover(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    """Every ``.py`` file of ``packages`` under ``root``, by dotted module name."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join(parts)
            n_lines = len(path.read_text(encoding="utf-8").splitlines())
            modules[name] = Module(name, path, is_package, n_lines)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """All nodes except those under ``if TYPE_CHECKING:`` (its ``else`` branch is kept)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _resolve_relative(module: Module, level: int, target: str | None) -> str:
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, target] if target else base)


def _known(name: str, modules: dict[str, Module]) -> str | None:
    """``name`` or its longest prefix that is one of ``modules``."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def parse(modules: dict[str, Module]) -> None:
    """Fill in each module's imports (internal targets only) and private attribute uses."""
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        nodes = _runtime_nodes(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _known(alias.name, modules)
                    if target is None:
                        module.external.add(alias.name.split(".")[0])
                        continue
                    module.imports.append((target, [], node.lineno))
                    if alias.asname:
                        module.module_aliases[alias.asname] = target
            elif isinstance(node, ast.ImportFrom):
                source = (
                    _resolve_relative(module, node.level, node.module)
                    if node.level
                    else node.module or ""
                )
                base = _known(source, modules)
                if base is None:
                    if not node.level and source and source != "__future__":
                        module.external.add(source.split(".")[0])
                    continue
                plain: list[str] = []
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        module.imports.append((submodule, [], node.lineno))
                        module.module_aliases[alias.asname or alias.name] = submodule
                    else:
                        plain.append(alias.name)
                if plain:
                    module.imports.append((base, plain, node.lineno))
        for node in nodes:
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module.module_aliases
                and _private(node.attr)
            ):
                target = module.module_aliases[node.value.id]
                module.private_attributes.append((target, node.attr, node.lineno))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> the internal modules it imports."""
    return {
        name: {target for target, _, _ in module.imports if target != name}
        | ({name} if any(t == name for t, _, _ in module.imports) else set())
        for name, module in modules.items()
    }


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components, key=lambda c: (-len(c), c))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Components that are cycles: more than one module, or a module importing itself."""
    return [c for c in strongly_connected(edges) if len(c) > 1 or c[0] in edges[c[0]]]


def private_imports(modules: dict[str, Module]) -> list[dict]:
    """``from other import _name`` and ``other._name`` uses, other being another module."""
    found = []
    for module in modules.values():
        for target, names, line in module.imports:
            for name in names:
                if _private(name) and target != module.name:
                    found.append({"module": module.name, "line": line, "name": f"{target}.{name}"})
        for target, attr, line in module.private_attributes:
            if target != module.name:
                found.append({"module": module.name, "line": line, "name": f"{target}.{attr}"})
    return sorted(found, key=lambda f: (f["module"], f["line"]))


def report(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict:
    """Modules (with line counts), edges, cycles, private and external imports, as data."""
    modules = discover(root, packages)
    parse(modules)
    edges = graph(modules)
    return {
        "modules": {name: m.n_lines for name, m in sorted(modules.items())},
        "edges": {name: sorted(targets) for name, targets in sorted(edges.items())},
        "cycles": cycles(edges),
        "private_imports": private_imports(modules),
        "external": {name: sorted(m.external) for name, m in sorted(modules.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--edges", action="store_true", help="also print every edge")
    parser.add_argument("--max-lines", type=int, default=500, help="flag longer modules")
    args = parser.parse_args(argv)
    result = report()
    if args.json:
        print(json.dumps(result, indent=1))
        return 1 if result["cycles"] else 0
    n_edges = sum(len(t) for t in result["edges"].values())
    print(f"{len(result['modules'])} modules, {n_edges} import edges")
    if args.edges:
        for name, targets in result["edges"].items():
            for target in targets:
                print(f"  {name} -> {target}")
    print(f"cycles: {len(result['cycles'])}")
    for component in result["cycles"]:
        print("  " + " <-> ".join(component))
    print(f"private names imported across modules: {len(result['private_imports'])}")
    for item in result["private_imports"]:
        print(f"  {item['module']}:{item['line']} uses {item['name']}")
    long = {n: k for n, k in result["modules"].items() if k > args.max_lines}
    print(f"modules over {args.max_lines} lines: {len(long)}")
    for name, n_lines in sorted(long.items(), key=lambda kv: -kv[1]):
        print(f"  {name}: {n_lines}")
    return 1 if result["cycles"] else 0


if __name__ == "__main__":
    sys.exit(main())
