"""The package's import structure: no cycles (imports inside functions count), no package
importing one that imports it back, and every registry complete on its first read.

The graph is read from the source with ``ast``: every ``import`` / ``from ... import`` node, at
any depth (functions, methods, ``try`` blocks), relative imports resolved against the module's
package; only imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``) for every .py file of ``package``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (anywhere in its code)."""
    modules = _modules(src, package)

    def known(name: str) -> str | None:  # the module itself, or the package it names a member of
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        own_package = name.split(".") if is_package else name.split(".")[:-1]
        edges = set()
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = own_package[: len(own_package) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in targets:
                resolved = known(target)
                if resolved is not None and resolved != name:
                    edges.add(resolved)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _room(module: str) -> str:
    """The top-level room of a module: ``unmask.bench.runner`` -> ``unmask.bench``."""
    return ".".join(module.split(".")[:2])


def _path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One cycle through ``component``, for the failure message."""
    inside = set(component)
    start, path = component[0], [component[0]]
    seen = {start}
    while True:
        nxt = sorted(graph[path[-1]] & inside)
        step = next((w for w in nxt if w == start), None) or next(
            (w for w in nxt if w not in seen), nxt[0]
        )
        path.append(step)
        if step == start or step in seen:
            return " -> ".join(path)
        seen.add(step)


# --- the checker checks ---------------------------------------------------------------------


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import X\n"
        "class K:\n    def m(self):\n        try:\n            import pkg.a\n"
        "        except ImportError:\n            pass\n"
    )
    (pkg / "c.py").write_text("from .sub.b import K\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a"}  # the TYPE_CHECKING import is left out
    assert graph["pkg.c"] == {"pkg.sub.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_cycles_finds_every_component():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# --- the package ----------------------------------------------------------------------------


def test_no_import_cycles_between_modules():
    graph = import_graph(SRC, "unmask")
    assert len(graph) > 100 and graph["unmask.cli.bench"]  # the whole package was read
    found = cycles(graph)
    assert not found, "import cycles (imports inside functions count):\n" + "\n".join(
        _path(graph, c) for c in found
    )


def test_no_room_imports_a_room_that_imports_it_back():
    """Rooms (``unmask.bench``, ``unmask.models``, ...) form a DAG: nothing points up."""
    rooms: dict[str, set[str]] = {}
    for module, targets in import_graph(SRC, "unmask").items():
        rooms.setdefault(_room(module), set()).update(
            _room(t) for t in targets if _room(t) != _room(module)
        )
    found = cycles(rooms)
    assert not found, "rooms importing each other:\n" + "\n".join(_path(rooms, c) for c in found)


def _fresh_python(script: str) -> str:
    """The standard output of ``script`` run in a new interpreter that sees only ``src``."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(SRC), "PATH": "", "MPLBACKEND": "Agg"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_import_unmask_fills_every_registry():
    """In a fresh interpreter, after ``import unmask`` alone the registries read complete (each
    imports the modules that fill it): importing every other module afterwards adds nothing."""
    script = textwrap.dedent(
        """
        import importlib, json, pkgutil
        import unmask
        from unmask.models import list_models
        from unmask.registry import METHODS, METRICS
        from unmask.removal import REMOVALS

        def snapshot():
            return {
                "methods": METHODS.names(aliases=True),
                "metrics": METRICS.names(aliases=True),
                "removals": REMOVALS.names(aliases=True),
                "models": sorted(list_models()),
            }

        before = snapshot()
        skipped = []
        for info in pkgutil.walk_packages(unmask.__path__, "unmask."):
            if info.name.endswith("__main__"):
                continue  # runs the command line
            try:
                importlib.import_module(info.name)
            except ImportError as exc:  # an optional extra that is not installed
                skipped.append(f"{info.name}: {exc}")
        print(json.dumps({"before": before, "after": snapshot(), "skipped": skipped}))
        """
    )
    out = json.loads(_fresh_python(script).strip().splitlines()[-1])
    before, after = out["before"], out["after"]
    for kind in ("methods", "metrics", "removals", "models"):
        assert before[kind], f"import unmask registered no {kind}"
        assert before[kind] == after[kind], (
            f"{kind} registered only when another module is imported: "
            f"{sorted(set(after[kind]) - set(before[kind]))}"
        )
    assert "synthetic_cnn" in before["models"] and "deletion" in before["metrics"]


@pytest.mark.parametrize("module", ["unmask.registry", "unmask.metrics.deletion"])
def test_any_first_import_sees_the_full_registries(module):
    """Whatever is imported first (Python imports the package ``unmask`` before it), the
    registries are complete."""
    out = _fresh_python(
        f"import {module}\nfrom unmask.registry import METHODS, METRICS\n"
        "print(len(METHODS.names()), len(METRICS.names()))"
    )
    methods, metrics = map(int, out.split())
    assert methods > 20 and metrics > 40
