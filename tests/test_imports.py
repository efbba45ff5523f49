"""Importing qflow changes nothing, and every module imports on its own (no cycles)."""

import pkgutil
import subprocess
import sys

import qflow

MODULES = sorted(m.name for m in pkgutil.walk_packages(qflow.__path__, "qflow."))


def test_importing_every_module_changes_no_environment_variable():
    code = ("import os, importlib, sys; before = dict(os.environ); "
            f"[importlib.import_module(m) for m in {MODULES!r}]; "
            "changed = {k for k in set(before) | set(os.environ) "
            "if before.get(k) != os.environ.get(k)}; print(sorted(changed))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_each_module_imports_first():
    """Any module imported first (as a Ray worker does) works: no import cycle bites."""
    code = ("import importlib, subprocess, sys\n"
            f"for m in {MODULES!r}:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True,"
            " text=True)\n"
            "    print(m, r.returncode, r.stderr.strip().splitlines()[-1:] )\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    bad = [line for line in out.stdout.splitlines() if " 0 " not in line]
    assert not bad, bad
