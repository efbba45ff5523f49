"""More placed loops than CPUs queue and all finish; an impossible one fails fast."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import env_for, run, script

THREE_LOOPS = """
    import threading, time
    import pennylane as qml
    import qflow
    from qflow.variational import minimize
    print("MODE", qflow.init(num_cpus=2))
    def circuit(p):
        qml.RX(p[0], wires=0)
        return qml.expval(qml.PauliZ(0))
    results, errors = [], []
    def one():
        try:
            results.append(minimize(circuit, [0.5], wires=1, steps=30, pack=5,
                                    backend="default.qubit").final_cost)
        except Exception as exc:
            errors.append(repr(exc))
    threads = [threading.Thread(target=one) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    print("RESULTS", len(results), all(c < -0.9 for c in results), errors)
"""


@pytest.mark.slow
def test_more_loops_than_cpus_queue(tmp_path):
    """Three loops, each holding a 1-CPU placed actor, on a 2-CPU Ray all complete."""
    out = run(script(THREE_LOOPS), env_for(tmp_path), timeout=400)
    assert "MODE embedded" in out.stdout, out.stderr[-3000:]
    assert "RESULTS 3 True []" in out.stdout, (out.stdout, out.stderr[-3000:])


def test_impossible_loop_fails_at_once():
    """A backend resource no node has: an error naming it, before anything is placed."""
    import time

    import pennylane as qml

    from qflow.backends import get_backend
    from qflow.exceptions import InfeasibleResourceError
    from qflow.variational import minimize

    def circuit(p):
        qml.RX(p[0], wires=0)
        return qml.expval(qml.PauliZ(0))

    backend = get_backend("simulated.qpu", inner="default.qubit", resource="qpu:nowhere")
    t0 = time.monotonic()
    with pytest.raises(InfeasibleResourceError, match="'qpu:nowhere'"):
        minimize(circuit, [0.1], wires=1, steps=2, backend=backend)
    assert time.monotonic() - t0 < 15
