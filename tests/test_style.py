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


@pytest.mark.parametrize("targets", [[], ["backends", "algorithms"]], ids=["qflow", "plugins"])
def test_mypy_passes(targets):
    """The package (pyproject's [tool.mypy]); backends/ and algorithms/ on their own,
    since they install as qflow.backends and qflow.algorithms."""
    out = _run("mypy", *targets)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
