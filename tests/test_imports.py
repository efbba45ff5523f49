"""Importing qflow changes nothing, and every module imports on its own (no cycles)."""

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import qflow

MODULES = sorted(m.name for m in pkgutil.walk_packages(qflow.__path__, "qflow."))


def test_importing_every_module_changes_no_environment_variable():
    code = (
        "import os, importlib, sys; before = dict(os.environ); "
        f"[importlib.import_module(m) for m in {MODULES!r}]; "
        "changed = {k for k in set(before) | set(os.environ) "
        "if before.get(k) != os.environ.get(k)}; print(sorted(changed))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_each_module_imports_first():
    """Any module imported first (as a Ray worker does) works: no import cycle bites."""
    code = (
        "import importlib, subprocess, sys\n"
        f"for m in {MODULES!r}:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True,"
        " text=True)\n"
        "    print(m, r.returncode, r.stderr.strip().splitlines()[-1:] )\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    bad = [line for line in out.stdout.splitlines() if " 0 " not in line]
    assert not bad, bad


def _module_level_imports(name: str) -> set[str]:
    """The qflow modules ``name`` imports when it is imported: module-level statements
    only (an import inside a function runs later, on purpose), not TYPE_CHECKING ones."""
    spec = importlib.util.find_spec(name)
    tree = ast.parse(Path(spec.origin).read_text())
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    found: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                break
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                found.update(
                    f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                    for a in node.names
                )
    return found & ({*MODULES, "qflow"})


def test_no_import_cycles():
    """Data flows one way: no qflow module imports, at import time, one that imports it
    back (directly or through others)."""
    edges = {m: _module_level_imports(m) for m in [*MODULES, "qflow"]}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(edges[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep] if dep in path else [module, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in edges:
        if module not in state:
            visit(module, [module])
