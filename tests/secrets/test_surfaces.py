"""Every place that takes ``secrets=``: bash leptons, deps_bash, call_before/call_after
hooks and the Slurm executor grant their names to the electron's call."""

from __future__ import annotations

import os
import pathlib

import pytest

import qflow
from qflow.executors import SlurmExecutor
from qflow.secrets import SecretKeep

VALUE = "surface-secret-value-0004"


@pytest.fixture(autouse=True)
def kept(qflow_home):
    SecretKeep.of_home(pathlib.Path(qflow_home)).set("SURFACE_KEY", VALUE)


def _read_key():
    return os.environ.get("SURFACE_KEY")


def test_hooks_deps_and_executors_add_their_names_to_the_call():
    hook = qflow.DepsCall(_read_key, secrets=["SURFACE_KEY"], retval_keyword="seen")
    el = qflow.electron(call_before=[hook])(lambda seen: seen)
    assert el.options.secrets == ("SURFACE_KEY",)
    el = qflow.electron(deps_bash=qflow.DepsBash(["true"], secrets="SURFACE_KEY"))(lambda: 1)
    assert el.options.secrets == ("SURFACE_KEY",)
    el = qflow.electron(executor=SlurmExecutor(secrets=["SURFACE_KEY"]))(lambda: 1)
    assert el.options.secrets == ("SURFACE_KEY",)
    assert qflow.electron(lambda: 1).options.secrets == ()


def test_a_bash_lepton_and_its_deps_see_the_secret_and_its_output_is_redacted(tmp_path):
    marker = tmp_path / "deps-saw-it"
    lepton = qflow.Lepton(
        "bash",
        command='echo "lepton has $SURFACE_KEY"; SEEN="${{#SURFACE_KEY}}"',
        named_outputs=["SEEN"],
        secrets=["SURFACE_KEY"],
        deps_bash=qflow.DepsBash([f'test -n "$SURFACE_KEY" && touch {marker}']),
    )

    @qflow.electron(call_before=[qflow.DepsCall(_read_key, retval_keyword="seen")])
    def hooked(length, seen=None):
        return seen

    @qflow.lattice
    def flow():
        return lepton(), hooked(1)

    res = qflow.dispatch_sync(flow)()
    assert res.status == "COMPLETED", res.error
    length, hook_saw = res.result
    assert length == str(len(VALUE)) and marker.exists()
    assert hook_saw is None  # hooked did not ask: its hook sees nothing either
    stdout = res.get_node_result(0)["stdout"]
    assert "lepton has [secret SURFACE_KEY]" in stdout and VALUE not in stdout


def test_two_local_electrons_at_once_see_only_their_own(qflow_home):
    """executor="local" runs both in the dispatcher's process, on two threads at once."""
    SecretKeep.of_home(pathlib.Path(qflow_home)).set("OTHER_KEY", VALUE + "-other")

    def peek(mine: str):
        import time

        time.sleep(0.5)  # both hold their secrets now
        # What it sees, by length: returning a granted value itself is refused.
        seen = {name: os.environ.get(name) for name in ("SURFACE_KEY", "OTHER_KEY")}
        return {name: len(v) if v else None for name, v in seen.items()}, mine

    first = qflow.electron(executor="local", secrets=["SURFACE_KEY"])(peek)
    second = qflow.electron(executor="local", secrets=["OTHER_KEY"])(peek)

    @qflow.lattice
    def flow():
        return first("a"), second("b")

    res = qflow.dispatch_sync(flow)()
    assert res.status == "COMPLETED", res.error
    (seen_a, _), (seen_b, _) = res.result
    assert seen_a == {"SURFACE_KEY": len(VALUE), "OTHER_KEY": None}
    assert seen_b == {"SURFACE_KEY": None, "OTHER_KEY": len(VALUE) + 6}
    # Both ran at once: their runs overlap.
    a, b = res.get_node_result(0), res.get_node_result(2)
    assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"]
