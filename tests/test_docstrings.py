"""The examples in public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "qflow",
    "qflow._status",
    "qflow.deps",
    "qflow.electron",
    "qflow.lattice",
    "qflow._api",
    "qflow.executors.ray",
    "qflow.executors.local",
    "qflow.executors.slurm",
    "qflow.store.sqlite",
    "qflow.qelectron",
    "qflow.variational",
    "qflow.backends.pennylane",
    "qflow.backends.simulated",
    "qflow.backends.braket",
    "qflow.algorithms.vqe",
    "qflow.algorithms.qaoa",
    "qflow.algorithms.scan",
    "qflow._plan",
    "qflow._recorder",
    "qflow._wait",
    "qflow._traceback",
    "qflow.retention",
    "qflow.cli",
    "qflow.settings",
    "qflow._completions",
    "qflow._text",
    "qflow.metrics",
    "qflow.ui.layout",
    "qflow.ui.views",
    "qflow.ui.app",
    "qflow.drawing",
    "qflow.transport",
    "qflow.executor",
    "qflow.waits",
    "qflow.result",
    "qflow.compat",
    "qflow.fs",
    "qflow.fs_strategies",
    "qflow.leptons",
    "qflow.triggers",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    """Every >>> example in the module passes."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"
