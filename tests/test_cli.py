"""The qflow command line."""

import pytest
from click.testing import CliRunner

import qflow
from qflow.cli import main


@qflow.electron
def shout(x):
    print(f"value {x}")
    return x


@qflow.electron
def broken():
    raise RuntimeError("kaput")


@qflow.lattice
def flow(x):
    return shout(x), broken()


@pytest.fixture(scope="module")
def failed_id():
    return qflow.dispatch_sync(flow)(3).dispatch_id


@pytest.mark.parametrize(
    "command",
    ["start", "stop", "status", "list", "show", "cancel", "scan", "demo", "slurm", "logs"],
)
def test_every_command_has_help(command):
    """Every command answers --help."""
    out = CliRunner().invoke(main, [command, "--help"])
    assert out.exit_code == 0 and "Usage:" in out.output


def test_list_show_logs(failed_id):
    """list, show and logs describe a dispatch."""
    runner = CliRunner()
    assert failed_id in runner.invoke(main, ["list", "--limit", "50"]).output
    shown = runner.invoke(main, ["show", failed_id]).output
    assert "FAILED" in shown and "broken(2)" in shown and "RuntimeError: kaput" in shown
    assert "lattice flow: 4 nodes" in shown  # shout, its literal, broken, the return value
    logs = runner.invoke(main, ["logs", failed_id, "0"]).output
    assert "value 3" in logs
    assert "kaput" in runner.invoke(main, ["logs", failed_id]).output


def test_unknown_id_is_an_error_not_a_traceback():
    """Errors print one clear line and exit 1."""
    out = CliRunner().invoke(main, ["show", "no-such-id"])
    assert out.exit_code == 1 and "No dispatch 'no-such-id'" in out.output


def test_cancel_finished(failed_id):
    """Cancelling a finished dispatch says so."""
    out = CliRunner().invoke(main, ["cancel", failed_id])
    assert "already ended FAILED" in out.output


def test_demo_runs():
    """`qflow demo` (the README's first command) completes."""
    out = CliRunner().invoke(main, ["demo", "--chunks", "2", "--samples", "1000"])
    assert out.exit_code == 0, out.output
    assert "status COMPLETED; pi ~ 3." in out.output


def test_slurm_down_with_nothing_recorded():
    """`qflow slurm down` with no allocation says so."""
    out = CliRunner().invoke(main, ["slurm", "down"])
    assert out.exit_code == 0 and "no Ray-on-Slurm allocation" in out.output
