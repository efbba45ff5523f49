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


def test_a_unique_id_prefix_works_everywhere_and_an_ambiguous_one_is_listed(failed_id):
    runner = CliRunner()
    prefix = failed_id[:10]
    assert "RuntimeError: kaput" in runner.invoke(main, ["show", prefix]).output
    assert "value 3" in runner.invoke(main, ["logs", prefix, "shout"]).output
    assert "already ended FAILED" in runner.invoke(main, ["cancel", prefix]).output
    exported = runner.invoke(main, ["export", prefix])
    assert exported.exit_code == 0 and failed_id in exported.output
    many = runner.invoke(main, ["show", ""])
    assert many.exit_code == 1
    none = runner.invoke(main, ["show", "zzzz-no-such"])
    assert none.exit_code == 1 and "qflow list" in none.output


def test_show_summarises_hides_parameters_and_filters_failures(failed_id):
    runner = CliRunner()
    shown = runner.invoke(main, ["show", failed_id]).output.splitlines()
    assert shown[1] == "3 nodes: completed 1, failed 1, pending 1"  # the return value waits
    assert not any(line.strip().startswith(":parameter:") for line in shown)
    every = runner.invoke(main, ["show", failed_id, "--all"]).output
    assert ":parameter:" in every
    failed = runner.invoke(main, ["show", failed_id, "--failed"]).output
    listing = failed.split("\nerror:")[0].splitlines()  # the nodes, before the dispatch's error
    node_lines = [ln for ln in listing if ln[:2] == "  " and ln[2] != " "]
    assert [ln.split()[0] for ln in node_lines] == ["broken(2)"]
    # Columns line up: each status starts at the same place.
    rows = [ln for ln in shown if ln[:2] == "  " and ln[2] != " " and "(" in ln.split()[0]]
    assert len({ln.index(ln.split()[1]) for ln in rows}) == 1


def test_logs_by_name_print_a_traceback_once(failed_id):
    runner = CliRunner()
    out = runner.invoke(main, ["logs", failed_id, "broken"]).output
    assert out.count("RuntimeError: kaput") == 1 and "== broken(2) [FAILED]" in out
    wrong = runner.invoke(main, ["logs", failed_id, "nosuch"])
    assert wrong.exit_code == 1 and "broken" in wrong.output and "shout" in wrong.output


def test_csv_export_has_what_nodes_printed(failed_id, tmp_path):
    import csv

    target = tmp_path / "nodes.csv"
    out = CliRunner().invoke(main, ["export", failed_id, "--format", "csv", "-o", str(target)])
    assert out.exit_code == 0, out.output
    with target.open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert rows["shout"]["stdout"].strip() == "value 3"
    assert "kaput" in rows["broken"]["stderr"]
