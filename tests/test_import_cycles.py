"""No import cycles inside the harness package: layers go one way (models know nothing of runs or entry points).

Every import counts, module-level and inside functions alike (a function-level import is still a
dependency; it only hides the cycle until that function runs). The graph is read from the source with
`ast`, so the test needs no imports of harness itself; cycles are the strongly connected components of
more than one module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py below `root` (a package's __init__ is the package)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules `name` imports anywhere in its file (`from a import b` counts a.b if that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def test_harness_has_no_import_cycles() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.py": "from pkg import b", "b.py": "def f():\n    from pkg.a import x"}, [["pkg.a", "pkg.b"]]),
        ({"__init__.py": "from pkg.a import x", "a.py": "from pkg import b", "b.py": "x = 1"}, [["pkg", "pkg.a"]]),
        (
            {"a.py": "from . import b", "b.py": "from .c import y", "c.py": "import pkg.a"},
            [["pkg.a", "pkg.b", "pkg.c"]],
        ),
        ({"a.py": "import pkg.b", "b.py": "import os", "c.py": "from pkg.a import z"}, []),  # a chain, no cycle
    ],
)
def test_the_walker_finds_planted_cycles(tmp_path: Path, files: dict[str, str], expected: list) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    assert sorted(cycles(import_graph(root))) == expected
