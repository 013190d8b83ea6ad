"""The shape of the code: every module imports on its own, and imports point one way.

webapp -> training, workers -> webapp and training, training -> neither; and no circle of
imports inside a package, counting the ones made inside functions (they are circles too, only
hidden until that function runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webapp", "workers", "training")
HEAVY = ("keras", "tensorflow", "tf2onnx")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` names in an import statement, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from webapp import runs` names the module webapp.runs, not the package.
            names |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}
    return names


def first_party_imports(name: str) -> set[str]:
    return {imported for imported in imported_names(MODULES[name]) if imported in MODULES and imported != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = "done", path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_graph_has_no_cycle():
    graph = {name: first_party_imports(name) for name in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("package, forbidden", [
    ("webapp", ("workers",) + HEAVY),  # the web enqueues by task name and serves with ONNX Runtime
    ("training", ("webapp", "workers", "flask", "celery", "sqlalchemy")),
])
def test_imports_point_one_way(package, forbidden):
    offenders = sorted(f"{name} imports {imported}" for name in MODULES if name.split(".")[0] == package
                       for imported in imported_names(MODULES[name])
                       if imported.split(".")[0] in forbidden)
    assert offenders == []


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """An import that works only after some other module was imported first is a hidden circle."""
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    failed = []
    for name in MODULES:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, env=env, capture_output=True,
                              text=True)
        if done.returncode:
            failed.append(f"{name}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    assert failed == []


# A module past this is two concerns, and a function past this is several steps (STYLE.md).
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50
MEASURED = ("webapp", "workers", "training", "bench")


def long_functions(source: str, limit: int) -> list[str]:
    """The functions (methods and nested ones too) of ``source`` longer than ``limit`` lines."""
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def measured_files() -> list[Path]:
    return [path for package in MEASURED for path in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in path.relative_to(ROOT).parts]


def test_no_webapp_module_passes_300_lines():
    offenders = [f"{path.relative_to(ROOT)} ({lines} lines)" for path in sorted((ROOT / "webapp").rglob("*.py"))
                 if "migrations" not in path.relative_to(ROOT).parts
                 and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert offenders == []


def test_no_function_passes_50_lines():
    offenders = [f"{path.relative_to(ROOT)}: {function}" for path in measured_files()
                 for function in long_functions(path.read_text(), MAX_FUNCTION_LINES)]
    assert offenders == []


def test_the_length_check_sees_methods_and_nested_functions():
    body = "\n".join(f"    x = {i}" for i in range(50))
    source = f"class A:\n    def short(self):\n        pass\n\n    def method(self):\n{body.replace('    ', '        ')}\n"
    source += f"\ndef outer():\n    def inner():\n{body.replace('    ', '        ')}\n    return inner\n"
    assert sorted(long_functions(source, 50)) == ["inner (51 lines)", "method (51 lines)", "outer (53 lines)"]


def test_bench_does_not_import_the_tests():
    """Benchmarks run from a deployment's checkout; the test tree is not their library."""
    offenders = sorted(f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "bench").rglob("*.py"))
                       for name in imported_names(path) if name.split(".")[0] == "tests")
    assert offenders == []
