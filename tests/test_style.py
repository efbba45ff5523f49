"""The code checks the README's test command runs: ruff (lint and format) and mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ["qflow", "backends", "algorithms", "tests", "benchmarks", "scripts", "examples"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_is_clean():
    out = _run("ruff", "check", "--no-cache", *TREES)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_ruff_format_is_clean():
    out = _run("ruff", "format", "--check", "--no-cache", *TREES)
    assert out.returncode == 0, "Run `ruff format` on: " + out.stdout[-4000:] + out.stderr[-2000:]


def test_the_wings_import_one_way():
    """The layer contracts in pyproject's [tool.importlinter] (every import counts)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command;"
            " sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


@pytest.mark.parametrize("targets", [[], ["backends", "algorithms"]], ids=["qflow", "plugins"])
def test_mypy_passes(targets):
    """The package (pyproject's [tool.mypy]); backends/ and algorithms/ on their own,
    since they install as qflow.backends and qflow.algorithms."""
    out = _run("mypy", *targets)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


USER_CODE = """
import qflow


@qflow.electron
def add(a: int, b: int) -> int:
    return a + b


@qflow.lattice
def flow(n: int) -> int:
    return add(n, 1)


total: int = add(1, 2)
dispatch_id: str = qflow.dispatch(flow)(3)
result = qflow.get_result(dispatch_id, wait=True).result
status = qflow.get_result(dispatch_id, status_only=True)["status"]
add("one", 2)
qflow.dispatch(flow)("three")
"""


def test_electrons_and_lattices_keep_their_signatures_for_type_checkers(tmp_path):
    """ParamSpec: a wrong argument to an electron, or to a dispatched lattice, is a type
    error, and a right one is not."""
    (tmp_path / "user.py").write_text(USER_CODE)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--ignore-missing-imports",
            str(tmp_path / "user.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["19", "20"], out.stdout
    assert all('"str"' in line and '"int"' in line for line in errors), out.stdout
