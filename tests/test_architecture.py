"""The layer rule, no import cycles, no cross-module private imports (docs/architecture.md).

These run in CI so the structure stays true: a new upward import, a cycle or a reach into another
module's private names fails the suite. The layer contract itself lives in pyproject.toml
(``[tool.importlinter]``) and is checked with import-linter, a well-kept tool for exactly this.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cytogate"

# Known debts being removed by the issue-8 redesign; each entry must disappear, never grow.
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_layer_contract_is_kept() -> None:
    proc = _lint_imports(ROOT, ROOT / "src")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_layer_contract_fails_on_an_upward_import(tmp_path: Path) -> None:
    """Prove the check bites: the io layer importing the viz layer breaks the contract."""
    shutil.copytree(
        SRC, tmp_path / "src" / "cytogate", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    victim = tmp_path / "src" / "cytogate" / "io" / "describe.py"
    victim.write_text(victim.read_text() + "\nimport cytogate.viz  # noqa: E402,F401\n")
    proc = _lint_imports(tmp_path, tmp_path / "src")
    assert proc.returncode != 0
    assert "cytogate.io is not allowed to import cytogate.viz" in proc.stdout


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & modules)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append(
                    (child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules)))
                )
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("cytogate", exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m != "cytogate"}
    cycles = [c for c in _cycles(graph, modules) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, f"import cycles: {cycles}"


def test_known_debts_still_exist() -> None:
    """A debt paid off is removed from the lists above, so they only ever shrink."""
    graph = grimp.build_graph("cytogate", exclude_type_checking_imports=True)
    cycles = {frozenset(c) for c in _cycles(graph, {m for m in graph.modules if m != "cytogate"})}
    assert KNOWN_CYCLES <= cycles, f"no longer cycles, remove them: {KNOWN_CYCLES - cycles}"
    stale = KNOWN_PRIVATE_IMPORTS - private_imports()
    assert not stale, f"no longer imported, remove them: {sorted(stale)}"


def test_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph, {"pkg.a", "pkg.b", "pkg.c"}) == [{"pkg.a", "pkg.b"}]


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_imports(src: Path = SRC) -> set[tuple[str, str]]:
    """(importer, 'module._name') for each `from cytogate.x import _name` across modules."""
    found = set()
    for path in src.rglob("*.py"):
        here = _module_name(path, src)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if not node.module.startswith("cytogate") or node.module == here:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add((here, f"{node.module}.{alias.name}"))
    return found


def test_no_cross_module_private_imports() -> None:
    unexpected = private_imports() - KNOWN_PRIVATE_IMPORTS
    assert not unexpected, f"private names imported across modules: {sorted(unexpected)}"


def test_private_import_check_bites(tmp_path: Path) -> None:
    pkg = tmp_path / "cytogate"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    return 1\n")
    (pkg / "b.py").write_text("from cytogate.a import _helper\n")
    assert private_imports(pkg) == {("cytogate.b", "cytogate.a._helper")}


@pytest.mark.parametrize("layer", ["io", "model", "gating", "analysis", "study", "viz"])
def test_each_layer_is_a_package(layer: str) -> None:
    assert (SRC / layer / "__init__.py").is_file()
