"""Importing qflow changes nothing, and no module imports one that imports it back.

With no cycle among all imports (module level and inside functions alike), any module
imports first, as a Ray worker imports whichever module a task names: the static check
below proves that for every module at once, without an interpreter per module.
"""

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import qflow
import qflow.algorithms
import qflow.backends

MODULES = sorted(m.name for m in pkgutil.walk_packages(qflow.__path__, "qflow."))
#: Every qflow module, with the ones backends/ and algorithms/ install, and the package.
ALL = sorted(
    {
        "qflow",
        "qflow.backends",
        "qflow.algorithms",
        *MODULES,
        *(m.name for m in pkgutil.walk_packages(qflow.backends.__path__, "qflow.backends.")),
        *(m.name for m in pkgutil.walk_packages(qflow.algorithms.__path__, "qflow.algorithms.")),
    }
)


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


def _imports(name: str) -> set[str]:
    """The qflow modules ``name`` imports anywhere in its source: at module level and
    inside functions alike (a function's import runs when it is called, which closes a
    cycle just the same), but not under ``if TYPE_CHECKING:``."""
    spec = importlib.util.find_spec(name)
    tree = ast.parse(Path(spec.origin).read_text())
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    typing_only = {
        id(n)
        for stmt in ast.walk(tree)
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
        for n in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.update(
                f"{base}.{a.name}" if f"{base}.{a.name}" in ALL else base for a in node.names
            )
    out = set()
    for module in found:  # `import qflow.x.y` imports qflow.x.y; a name in it, the module
        while module and module not in ALL:
            module = module.rpartition(".")[0]
        if module and module != name:
            out.add(module)
    return out


def test_no_import_cycles():
    """Data flows one way: no qflow module imports, directly or through others, one that
    imports it back, counting imports made inside functions."""
    edges = {m: _imports(m) for m in ALL}
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

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_old_module_paths_are_the_moved_modules_and_old_pickles_load():
    """A store written before the wings holds pickles naming the old paths."""
    import pickle

    from qflow._moved import MOVED

    for old, new in MOVED.items():
        module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
        assert module.__spec__.name == new and module.__name__ == new
    assert (
        pickle.loads(b"cqflow._graph\nGraph\n.")
        is importlib.import_module("qflow.core.graph").Graph
    )
    assert pickle.loads(b"cqflow.fs\nFileTransfer\n.") is qflow.fs.FileTransfer
    assert callable(qflow.qelectron)  # the decorator, not a module of the same name
