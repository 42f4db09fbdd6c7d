"""House rules that keep the code readable, checked on the source (issue 22): no two modules or
packages of calql import each other (imports inside functions count), no function is over 100
lines, and the run-file contract imports nothing of calql but the atomic writer."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CALQL = REPO / "calql"
MAX_FUNCTION_LINES = 100


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """calql module -> the calql modules it imports (anywhere in the file)."""
    modules = {_module_name(p): p for p in CALQL.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("calql") and target != name:
                    graph[name].add(target)
    return graph


def _unit(module: str) -> str:
    """The package (calql.training) or top-level module (calql.provenance) a module belongs to."""
    return ".".join(module.split(".")[:2])


def test_no_two_modules_import_each_other() -> None:
    graph = _imports()
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, set()))
    assert pairs == []


def test_no_two_packages_import_each_other() -> None:
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        units[_unit(module)] |= {_unit(t) for t in targets if _unit(t) != _unit(module)}
    pairs = sorted((a, b) for a in units for b in units[a] if a < b and a in units.get(b, set()))
    assert pairs == []


def test_the_run_file_contract_imports_nothing_else_of_calql() -> None:
    """Only the atomic writer (itself a leaf), so training, tracking and analysis can all use it."""
    graph = _imports()
    outside = {t for m, targets in graph.items() if m.startswith("calql.run_files") for t in targets}
    assert {t for t in outside if not t.startswith("calql.run_files")} <= {"calql.atomic"}
    assert graph.get("calql.atomic", set()) <= {"calql.errors"} and not graph.get("calql.errors")


def test_no_function_is_over_100_lines() -> None:
    long = []
    for root in ("calql", "analysis", "benchmarks", "scripts"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_the_checks_see_a_cycle() -> None:
    """The import check is not vacuous: it finds the edges of a known import."""
    graph = _imports()
    assert "calql.run_files.layout" in graph["calql.run_files"]
    assert "calql.training.run_config" in graph["calql.training.resolve"]
