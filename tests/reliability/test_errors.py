"""Clear errors, early, and never a silent wrong answer."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest

import qflow
from qflow.exceptions import GraphBuildError, QflowConfigError, QflowInputError
from tests.reliability.helpers import ONE_ELECTRON, QFLOW, env_for, run, script


@qflow.electron
def two():
    return 2


@qflow.electron
def boom(x):
    return 1 / x


class TestOutputsAtBuildTime:
    """What a lattice does with an output it does not have yet (graph build only)."""

    @pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
    def test_comparisons_become_nodes(self, op):
        @qflow.lattice
        def flow():
            return eval(f"two() {op} 2")

        graph = flow.build_graph()
        assert graph.nodes[-1].kind == "op"

    @pytest.mark.parametrize(
        "use, what",
        [
            (lambda out: bool(out == 2), "cannot decide an `if`"),
            (lambda out: f"{out}", "f-string"),
            (lambda out: str(out), "str()"),
            (lambda out: {out}, "Hashing"),
            (lambda out: {out: 1}, "Hashing"),
            (lambda out: int(out), "int()"),
            (lambda out: float(out), "float()"),
            (lambda out: range(out), "index or a range bound"),
            (lambda out: 1 in out, "`in`"),
        ],
    )
    def test_uses_that_need_the_value_raise_with_advice(self, use, what):
        @qflow.lattice
        def flow():
            return use(two())

        with pytest.raises(GraphBuildError) as err:
            flow.build_graph()
        assert what in str(err.value) and "electron" in str(err.value)

    def test_comparison_is_computed_at_run_time(self):
        @qflow.lattice
        def flow():
            out = two()
            return [out == 2, out != 2, out > 1, out >= 3]

        res = qflow.dispatch_sync(flow)()
        assert res.status == "COMPLETED" and res.result == [True, False, True, False]


class TestValidationBeforeDispatch:
    def test_scan_unknown_backend(self):
        from qflow.algorithms import scan_h2

        before = len(qflow._api._runtime().store.list_dispatches(10_000))
        with pytest.raises(QflowConfigError, match="nope"):
            scan_h2([1.4], backend="nope", plot=None)
        with pytest.raises(QflowConfigError, match="steps must be"):
            scan_h2([1.4], steps=-1, plot=None)
        with pytest.raises(QflowConfigError, match="ansatz"):
            scan_h2([1.4], ansatz="nope", plot=None)
        assert len(qflow._api._runtime().store.list_dispatches(10_000)) == before

    def test_scan_cli(self, tmp_path):
        env = env_for(tmp_path)
        for args, hint in (
            (["--backend", "nope"], "--backend"),
            (["--steps", "-1"], "--steps"),
            (["--pack", "0"], "--pack"),
            (["--bonds", "a,b"], "--bonds"),
        ):
            out = run([*QFLOW, "scan", *args], env, timeout=120)
            assert out.returncode == 2 and hint in out.stderr, (args, out.stderr)
            assert "Traceback" not in out.stderr
        assert (
            not (tmp_path / "qflow.db").exists()
            or "no dispatches" in run([*QFLOW, "list"], env).stdout
        )

    def test_too_many_params(self):
        from qflow.variational import minimize

        def circuit(p):
            qml.RX(p[0], wires=0)
            qml.RY(p[1], wires=1)
            qml.CNOT(wires=[0, 1])
            qml.RZ(p[2], wires=1)
            qml.RX(p[3], wires=0)
            return qml.expval(qml.PauliZ(0) @ qml.PauliZ(1))

        with pytest.raises(QflowInputError, match=r"never reads params 4\.\.5 of the 6 given"):
            minimize(circuit, np.zeros(6), wires=2, steps=2)

    def test_qnode_instead_of_circuit(self):
        from qflow.variational import minimize

        @qml.qnode(qml.device("default.qubit", wires=1))
        def node(p):
            qml.RX(p[0], wires=0)
            return qml.expval(qml.PauliZ(0))

        with pytest.raises(QflowInputError, match=r"got the QNode.*my_qnode\.func"):
            minimize(node, [0.1], wires=1, steps=2)


class TestUserTracebacks:
    def test_electron_error_shows_user_frames_only(self):
        @qflow.lattice
        def flow():
            return boom(0)

        res = qflow.dispatch_sync(flow)()
        error = res.get_node_result(0)["error"]
        assert "ZeroDivisionError: division by zero" in error
        assert __file__ in error and "return 1 / x" in error
        for internal in ("qflow/_task.py", "qflow/_dispatcher.py", "ray/"):
            assert internal not in error, error

    def test_sublattice_error_has_no_qflow_chain(self):
        @qflow.lattice
        def inner(x):
            return boom(x)

        @qflow.lattice
        def outer():
            return qflow.electron(inner)(0)

        res = qflow.dispatch_sync(outer)()
        assert res.status == "FAILED"
        for internal in ("qflow/_task.py", "qflow/_sublattice.py", "qflow/lattice.py"):
            assert internal not in res.error, res.error
        assert "ZeroDivisionError" in res.error and __file__ in res.error

    def test_circuit_error_keeps_the_users_type_and_line(self):
        @qflow.qelectron(backend="default.qubit", wires=1)
        def bad_circuit(theta):
            qml.RX(theta / 0, wires=0)  # the user's bug
            return qml.expval(qml.PauliZ(0))

        @qflow.lattice
        def flow():
            return bad_circuit(1.0)

        res = qflow.dispatch_sync(flow)()
        error = res.get_node_result(0)["error"]
        assert "ZeroDivisionError" in error and "BackendError" not in error
        assert "qml.RX(theta / 0, wires=0)" in error and __file__ in error


@pytest.mark.slow
def test_no_ray_chatter_on_cli_or_scripts(tmp_path):
    env = env_for(tmp_path)
    out = run(script(ONE_ELECTRON), env)
    assert out.stdout.splitlines()[-1] == "RESULT 1", out
    for noise in ("Token authentication", "INFO", "WARNING", "[20"):
        assert noise not in out.stderr, out.stderr
    listed = run([*QFLOW, "list"], env)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr


@qflow.electron
def noisy():
    print("\x1b[2J\x1b[Hcleared \x1b]0;owned\x07title \x1b[31mred\x1b[0m done")
    return 1


def test_logs_strip_terminal_control_sequences(qflow_home):
    @qflow.lattice
    def flow():
        return noisy()

    res = qflow.dispatch_sync(flow)()
    assert "\x1b" in res.get_node_result(0)["stdout"]  # stored as printed
    out = run([*QFLOW, "logs", res.dispatch_id], env_for(qflow_home))
    assert out.returncode == 0 and "cleared title red done" in out.stdout, out
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
