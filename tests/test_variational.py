"""Packed variational loops on placed actors."""

import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace

import pennylane as qml
import pytest
import ray

import qflow
from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.variational import minimize


def _warm_actors():
    """Loop actors alive now (busy or idle in the warm pool)."""
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("qflow-warm-")
    )


def rx_circuit(p):
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))


def slow_circuit(p):
    time.sleep(0.02)
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))


class TestMinimize:
    def test_packs_chunks_as_nodes(self):
        """steps/pack chunks are dispatch nodes whose outputs hold the trajectory."""
        res = minimize(rx_circuit, [0.3], wires=1, backend="default.qubit", steps=25, pack=10)
        assert res.iterations == 25 and len(res.costs) == 25
        named = qflow.get_result(res.dispatch_id).lattice_name
        assert named == "minimize rx_circuit on default.qubit"  # what it is, by default
        assert res.final_cost < -0.99
        assert res.costs == sorted(res.costs, reverse=True)  # descending
        nodes = qflow.get_result(res.dispatch_id).get_all_node_results()
        chunks = [n for n in nodes if n["node_name"] == "run_chunk"]
        assert len(chunks) == 3
        assert [len(c["output"].get_deserialized()["costs"]) for c in chunks] == [10, 10, 5]

    def test_tol_stops_early(self):
        """A tolerance ends the loop; later chunks pass through."""
        res = minimize(
            rx_circuit,
            [0.3],
            wires=1,
            backend="default.qubit",
            steps=200,
            pack=20,
            tol=1e-6,
            name="RX warm-up",
            tags=["demo"],
        )
        assert res.converged and res.iterations < 200
        assert qflow.get_result(res.dispatch_id).lattice_name == "RX warm-up"
        with pytest.raises(QflowInputError, match="non-empty strings"):
            minimize(rx_circuit, [0.3], wires=1, backend="default.qubit", steps=2, tags=[""])

    def test_actor_is_cleaned_up(self):
        """With keep_warm=0 the loop's actor is gone when the loop returns."""
        from qflow import _loop_pool

        _loop_pool.call_pool("clear")
        res = minimize(
            rx_circuit, [0.3], wires=1, backend="default.qubit", steps=2, pack=1, keep_warm=0
        )
        assert res.iterations == 2 and _warm_actors() == []

    def test_a_warm_actor_starts_the_next_loop_and_then_goes(self):
        """Issue 11: the next loop with the same resources reuses the idle actor (no new
        process, no PennyLane import), and an idle actor stops after keep_warm."""
        from qflow import _loop_pool

        _loop_pool.call_pool("clear")
        first = minimize(rx_circuit, [0.3], wires=1, steps=2, pack=1, keep_warm=30)
        (warm,) = _warm_actors()
        t0 = time.perf_counter()
        second = minimize(rx_circuit, [0.4], wires=1, steps=2, pack=1, keep_warm=1)
        assert time.perf_counter() - t0 < 1.0  # no new process: the loop starts at once
        assert _warm_actors() == [warm] and second.actor_node_ids == first.actor_node_ids
        deadline = time.monotonic() + 10
        while _warm_actors() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _warm_actors() == []

    def test_resume_after_actor_killed(self):
        """Killing the actor mid-loop restarts it from the last finished chunk."""
        from qflow import _loop_pool

        _loop_pool.call_pool("clear")  # so that the loop starts a new actor
        out = {}
        names_before = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}

        def run():
            out["res"] = minimize(
                slow_circuit, [0.3], wires=1, backend="default.qubit", steps=60, pack=5
            )

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        actor = None
        while actor is None and time.monotonic() < deadline:
            names = [
                a["name"]
                for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("qflow-warm-") and a["name"] not in names_before
            ]
            if names:
                actor = ray.get_actor(names[0], namespace="qflow")
            time.sleep(0.05)
        assert actor is not None
        time.sleep(1.0)  # let a few chunks finish
        ray.kill(actor)
        thread.join(120)
        res = out["res"]
        assert res.actor_restarts == 1
        assert res.iterations == 60 and res.final_cost < -0.99


class TestBadInput:
    def test_wrong_wire_count(self):
        """A circuit using more wires than declared is refused before running."""

        def circuit(p):
            qml.RX(p[0], wires=3)
            return qml.expval(qml.PauliZ(3))

        with pytest.raises(QflowConfigError, match=r"uses wires \[3\], but wires=2.*wires=4"):
            minimize(circuit, [0.1], wires=2)

    def test_non_differentiable_cost(self):
        """A gradient optimizer with a non-scalar cost is refused with advice."""

        def circuit(p):
            qml.RX(p[0], wires=0)
            return qml.probs(wires=0)

        with pytest.raises(
            QflowInputError,
            match="GradientDescentOptimizer needs a differentiable scalar cost.*ProbabilityMP",
        ):
            minimize(circuit, [0.1], wires=1)

    def test_bad_pack(self):
        """pack must be a positive int."""
        with pytest.raises(QflowConfigError, match="pack must be an int >= 1; got 0"):
            minimize(rx_circuit, [0.1], wires=1, pack=0)


def test_credentials_never_persisted(qflow_home, monkeypatch):
    """AWS secrets in the environment never reach the store or its blobs."""
    secret = "SECRET-do-not-store-7f3a"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    res = minimize(rx_circuit, [0.3], wires=1, backend="braket.local.qubit", steps=2, pack=1)
    assert res.iterations == 2
    for path in pathlib.Path(qflow_home).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


PLACEMENT = textwrap.dedent("""
    import numpy as np, pennylane as qml, ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gateway = cluster.add_node(num_cpus=1, resources={"qpu:simulated": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    from qflow.variational import minimize
    def circuit(p):
        qml.RX(p[0], wires=0)
        return qml.expval(qml.PauliZ(0))
    res = minimize(circuit, [0.3], wires=1, steps=4, pack=2,
                   backend={"name": "simulated.qpu", "inner": "default.qubit"})
    print("GATEWAY", gateway.node_id)
    print("ACTOR", *sorted(set(res.actor_node_ids)))
    ray.shutdown()
    cluster.shutdown()
""").replace(
    'backend={"name": "simulated.qpu", "inner": "default.qubit"}',
    'backend=__import__("qflow.backends", fromlist=["x"]).get_backend('
    '"simulated.qpu", inner="default.qubit")',
)


@pytest.mark.multinode
@pytest.mark.slow
def test_actor_placed_on_node_holding_backend_resource(tmp_path):
    """With two nodes, the loop's actor lands on the one advertising the QPU resource."""
    env = {**os.environ, "QFLOW_HOME": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, "-c", PLACEMENT], env=env, capture_output=True, text=True, timeout=300
    )
    lines = dict(
        ln.split(" ", 1) for ln in out.stdout.splitlines() if ln.startswith(("GATEWAY", "ACTOR"))
    )
    assert "GATEWAY" in lines, out.stderr[-3000:]
    assert lines["ACTOR"] == lines["GATEWAY"]


class TestGradientMethod:
    """Issue 11, shots: the gradient method follows the backend and its shots."""

    def test_default_follows_shots_and_is_checked_before_dispatch(self):
        from qflow.backends import get_backend

        assert get_backend("lightning.qubit").gradient_method() == "adjoint"
        assert get_backend("lightning.qubit", shots=100).gradient_method() == "parameter-shift"
        assert get_backend("default.qubit", shots=100).gradient_method() == "best"
        with pytest.raises(QflowConfigError, match="'adjont' is not one of best, adjoint"):
            minimize(rx_circuit, [0.1], wires=1, diff_method="adjont")
        with pytest.raises(QflowConfigError, match="needs exact simulation.*shots=50"):
            minimize(
                rx_circuit,
                [0.1],
                wires=1,
                diff_method="adjoint",
                backend=get_backend("lightning.qubit", shots=50),
            )

    def test_simulated_qpu_passes_its_shots_on(self):
        from qflow.backends import get_backend

        qpu = get_backend("simulated.qpu", inner="default.qubit", shots=1000, round_trip_ms=0)
        assert qpu.shots == 1000 and qpu.inner.shots == 1000
        with pytest.raises(QflowConfigError, match="has other shots"):
            get_backend("simulated.qpu", inner=get_backend("default.qubit", shots=10), shots=1000)

    def test_lightning_with_shots_runs(self):
        from qflow.backends import get_backend

        res = minimize(
            rx_circuit,
            [0.3],
            wires=1,
            steps=4,
            pack=2,
            backend=get_backend("lightning.qubit", shots=2000),
        )
        assert len(res.costs) == 4 and all(-1.0 <= c <= 1.0 for c in res.costs)


def test_shots_go_on_the_qnode_without_deprecation_warnings():
    """PennyLane 0.45 deprecates device shots; warnings are errors in this suite."""
    from qflow.backends import get_backend

    for name in ("default.qubit", "lightning.qubit"):
        backend = get_backend(name, shots=64)
        qnode = backend.qnode(rx_circuit, backend.make_device(1))
        assert -1.0 <= float(qnode([0.2])) <= 1.0


def test_a_seed_makes_a_run_with_shots_repeat():
    """Issue 11: seed= on the backend reproduces a shots run end to end."""
    from qflow.backends import get_backend

    def run(seed):
        backend = get_backend("lightning.qubit", shots=100, seed=seed)
        return minimize(rx_circuit, [0.3], wires=1, steps=4, pack=2, backend=backend).costs

    first, again, other = run(11), run(11), run(12)
    assert first == again and first != other
    with pytest.raises(QflowConfigError, match="braket.local.qubit cannot be seeded"):
        get_backend("braket.local.qubit", shots=10, seed=1)
    with pytest.raises(QflowConfigError, match="seed must be None or an int >= 0"):
        get_backend("default.qubit", seed=-1)


_FLAKY = {"armed": False}


def flaky_circuit(p):
    """rx_circuit, failing anywhere but at p = [0.3] once armed (pickled by reference, so
    arming it reaches the copy an in-process loop actor loaded)."""
    if _FLAKY["armed"] and abs(float(getattr(p[0], "_value", p[0])) - 0.3) > 1e-12:
        raise ValueError("flaky circuit")
    return rx_circuit(p)


@pytest.fixture
def in_process_actors():
    """A loop actor made in this process becomes "the actor of this process": undo it."""
    from qflow.loops.actor import LoopActor as _LoopActor

    yield
    _LoopActor.in_this_process = None


@pytest.mark.usefixtures("in_process_actors")
class TestHeldOutputs:
    """The loop actor keeps each chunk's output for the next chunk sent to it, so the
    loop executor can queue every chunk at once (no Ray)."""

    @staticmethod
    def _loop(circuit=rx_circuit, steps=6):
        from qflow._plan import plan
        from qflow._task import CallTemplate, TaskCall
        from qflow.loops.actor import LoopActor as _LoopActor
        from qflow.loops.spec import prepare
        from qflow.loops.workflow import variational_loop

        spec, state = prepare(circuit, [0.3], wires=1, backend="default.qubit", steps=steps, pack=2)
        planned = plan(variational_loop.build_graph(spec, state))
        chunks = [
            TaskCall(
                template=CallTemplate("d", pc.name, pc.kind, pc.fn, pc.options),
                node_id=nid,
                program=pc.program,
                args=pc.args,
                kwargs=pc.kwargs,
                dep_ids=pc.dep_ids,
            )
            for nid, pc in sorted(planned.calls.items())
            if pc.name == "run_chunk"
        ]
        actor = _LoopActor()
        actor.load(spec)
        return actor, chunks

    @staticmethod
    def _send(actor, chunks):
        """Each chunk as the loop executor sends it: the one before it as a Held, and
        every chunk but the last kept."""
        from qflow.executors.loop import Held

        outs, before = [], []
        for i, call in enumerate(chunks):
            keep = Held("d", call.node_id) if i < len(chunks) - 1 else None
            try:
                value, _ = actor.run_node(call.parts(), *before, keep=keep)
            except Exception as exc:
                value = exc
            outs.append(value)
            before = [keep]
        return outs

    def test_each_chunk_runs_from_the_output_held_for_it(self):
        from qflow.loops.spec import ChunkState

        actor, chunks = self._loop()
        outs = self._send(actor, chunks)
        assert [o["step"] for o in outs] == [2, 4, 6]
        assert all(isinstance(o, ChunkState) for o in outs)
        assert actor._held == {}  # the last chunk's output goes to the loop's close alone

    def test_an_error_reaches_every_chunk_after_it_as_with_a_ray_argument(self):
        from qflow._task import OUTCOME_ATTR

        actor, chunks = self._loop(flaky_circuit)
        _FLAKY["armed"] = True
        try:
            outs = self._send(actor, chunks)
        finally:
            _FLAKY["armed"] = False
        assert all(isinstance(o, ValueError) for o in outs)  # the first chunk's 2nd step
        # The error names the chunk it happened in: the dispatcher records the later
        # chunks as never run, not as failed.
        assert {getattr(o, OUTCOME_ATTR).node_id for o in outs} == {chunks[0].node_id}

    def test_an_error_passed_down_a_long_queue_does_not_grow(self):
        """Every chunk queued after a failure raises the failed chunk's error: raised
        afresh each time, its traceback stays short (it grew with each chunk, and
        formatting it made a long loop's failure quadratic)."""
        import traceback

        actor, chunks = self._loop(flaky_circuit, steps=60)
        _FLAKY["armed"] = True
        try:
            outs = self._send(actor, chunks)
        finally:
            _FLAKY["armed"] = False
        assert len(outs) == 30 and all(isinstance(o, ValueError) for o in outs)
        assert len(traceback.extract_tb(outs[-1].__traceback__)) < 10

    def test_an_output_it_does_not_hold_is_refused(self):
        """A new actor, or one that has served another loop since: the chunk reruns
        from its input's Ray object (see qflow.executors.loop)."""
        from qflow.executors.loop import Held, NotServingError

        actor, chunks = self._loop()
        with pytest.raises(NotServingError, match="does not hold"):
            actor.run_node(chunks[1].parts(), Held("d", chunks[0].node_id))

    def test_chunks_sent_together_run_in_order_each_with_its_own_outcome(self):
        """LoopActor.run_nodes, as the loop executor sends short chunks: an input is an
        Arg (one of the call's arguments) or the Held output of the chunk before."""
        from qflow.executors.loop import Held
        from qflow.loops.executor import Arg, ChunkFailed
        from qflow.loops.spec import ChunkState

        actor, chunks = self._loop()
        first, _ = actor.run_node(chunks[0].parts(), keep=None)
        calls = [
            (chunks[1].parts(), (Arg(0),), Held("d", chunks[1].node_id)),
            (chunks[2].parts(), (Held("d", chunks[1].node_id),), None),
        ]
        *values, outcomes = actor.run_nodes(calls, first)  # a value each, then outcomes
        assert len(values) == len(outcomes) == 2
        assert not any(isinstance(o, ChunkFailed) for o in outcomes)
        assert [values[0]["step"], values[1]["step"]] == [4, 6]
        assert isinstance(values[1], ChunkState) and actor._held == {}

    def test_a_chunk_that_fails_among_chunks_sent_together_has_no_value_and_its_error(self):
        from qflow.executors.loop import Held
        from qflow.loops.executor import ChunkFailed, _chunk_outcome

        actor, chunks = self._loop(flaky_circuit)
        _FLAKY["armed"] = True
        try:
            *values, outcomes = actor.run_nodes(
                [
                    (chunks[0].parts(), (), Held("d", chunks[0].node_id)),
                    (chunks[1].parts(), (Held("d", chunks[0].node_id),), None),
                ]
            )
        finally:
            _FLAKY["armed"] = False
        assert values == [None, None]
        assert all(isinstance(o, ChunkFailed) for o in outcomes)
        with pytest.raises(ValueError, match="flaky circuit"):
            _chunk_outcome(outcomes[1])  # the error of the chunk before, as Ray would


class TestShotStatistics:
    """Issue 11: with shots, a reported energy carries its standard error, and the loop
    stops when its progress can no longer be told from shot noise."""

    def test_h2_energy_with_shots_has_an_honest_error_bar(self):
        from qflow.algorithms import Molecule, vqe
        from qflow.backends import get_backend

        exact = -1.1372701746  # H2 STO-3G FCI at 0.7414 Å
        res = vqe(
            Molecule.h2(),
            backend=get_backend("default.qubit", shots=2000, seed=5),
            ansatz="double_excitation",
            steps=80,
            pack=20,
            final_repeats=12,
        )
        assert res.energy_stderr is not None and 0 < res.energy_stderr < 0.01
        # Within 4 standard errors of the exact energy, on either side.
        assert abs(res.energy - exact) < 4 * res.energy_stderr + 1e-3
        # The statistical stop fired well before the step budget.
        assert res.loop.converged and res.iterations < 80
        assert res.inputs["backend"]["shots"] == 2000 and res.inputs["final_repeats"] == 12

    def test_exact_runs_have_no_error_bar(self):
        res = minimize(rx_circuit, [0.5], wires=1, steps=4, pack=4)
        assert res.final_cost_stderr is None and res.inputs["final_repeats"] == 1

    def test_stalled_decides_on_the_trend_not_one_step(self):
        import numpy as np

        from qflow.variational import STAT_WINDOW, stalled

        rng = np.random.default_rng(1)
        noise = 0.02 * rng.standard_normal(STAT_WINDOW)
        assert not stalled(list(noise)[:-1], 1e-9)  # too few points to judge
        assert stalled(list(-1.0 + noise), 1e-9)  # flat within noise
        falling = -0.01 * np.arange(STAT_WINDOW) + 0.002 * rng.standard_normal(STAT_WINDOW)
        assert not stalled(list(falling), 1e-9)  # a clear decrease goes on
        assert stalled(list(falling), 0.2)  # unless it is below tol

    def test_bad_final_repeats_and_tol(self):
        with pytest.raises(QflowConfigError, match="final_repeats must be an int >= 1"):
            minimize(rx_circuit, [0.5], wires=1, final_repeats=0)
        with pytest.raises(QflowConfigError, match="tol must be None or a number >= 0"):
            minimize(rx_circuit, [0.5], wires=1, tol="small")


class TestProgress:
    def test_callback_sees_every_step_in_order(self):
        seen = []
        res = minimize(
            rx_circuit,
            [0.5],
            wires=1,
            steps=7,
            pack=3,
            callback=lambda step, cost: seen.append((step, cost)),
        )
        assert [s for s, _ in seen] == list(range(7))
        assert [c for _, c in seen] == pytest.approx(res.costs)

    def test_a_failing_callback_cancels_the_loop(self):
        def stop(step, cost):
            raise KeyboardInterrupt("enough")

        with pytest.raises(KeyboardInterrupt, match="enough"):
            minimize(slow_circuit, [0.5], wires=1, steps=200, pack=5, callback=stop)

    def test_progress_bar_on_stderr(self, capfd):
        minimize(rx_circuit, [0.5], wires=1, steps=6, pack=3, progress=True)
        err = capfd.readouterr().err
        assert "6/6" in err and "cost" in err

    def test_callback_must_be_callable(self):
        with pytest.raises(QflowInputError, match="callback is a function callback"):
            minimize(rx_circuit, [0.5], wires=1, callback="print")


def test_loop_result_exports(tmp_path):
    """JSON and a DataFrame, each with the inputs that reproduce the run."""
    import json

    res = minimize(
        rx_circuit, [0.5], wires=1, steps=5, pack=5, optimizer=qml.GradientDescentOptimizer(0.3)
    )
    data = json.loads(res.to_json(tmp_path / "loop.json"))
    assert data == json.loads((tmp_path / "loop.json").read_text())
    assert data["final_cost"] == pytest.approx(res.final_cost)
    inputs = data["inputs"]
    assert inputs["optimizer"] == {
        "class": "pennylane.optimize.gradient_descent.GradientDescentOptimizer",
        "stepsize": 0.3,
    }
    assert inputs["initial_params"] == [0.5] and inputs["backend"]["name"] == "lightning.qubit"
    assert {"pennylane", "ray", "numpy", "python"} <= set(inputs["versions"])
    frame = res.to_dataframe()
    assert list(frame.columns) == ["step", "cost"] and len(frame) == 5
    assert frame.attrs["inputs"]["steps"] == 5


@pytest.mark.usefixtures("in_process_actors")
class TestChunkOnTheActor:
    """``run_chunk`` as the loop executor runs it: inside the loop's actor (no Ray)."""

    def _serving(self):
        from qflow.loops.actor import LoopActor as _LoopActor
        from qflow.loops.spec import prepare

        spec, state = prepare(rx_circuit, [0.3], wires=1, backend="default.qubit", steps=4, pack=2)
        actor = _LoopActor()
        actor.load(spec)
        return spec, state

    def test_runs_in_place_and_logs_each_cost(self):
        from qflow.loops.workflow import run_chunk
        from qflow.metrics import collecting

        spec, state = self._serving()
        with collecting(0) as points:
            out = run_chunk.fn(spec, state, 2, last=False)
        assert out["step"] == 2 and len(out["costs"]) == 2
        assert [(p.step, p.value) for p in points] == list(enumerate(out["costs"]))

    def test_refuses_a_chunk_of_another_loop(self):
        from qflow.executors.loop import NotServingError
        from qflow.loops.workflow import run_chunk

        spec, state = self._serving()
        with pytest.raises(NotServingError, match="serves loop .*, not other"):
            run_chunk.fn(replace(spec, loop_id="other"), state, 2, last=False)

    def test_a_chunk_reads_as_one_line_and_only_the_last_carries_the_inputs(self):
        from qflow._text import value_text
        from qflow.loops.spec import ChunkState
        from qflow.loops.workflow import run_chunk
        from qflow.metrics import collecting

        spec, state = self._serving()
        with collecting(0):
            first = run_chunk.fn(spec, state, 2, last=False)
            last = run_chunk.fn(spec, first, 2, last=True)
        assert isinstance(first, ChunkState) and "inputs" not in first
        assert last["inputs"]["steps"] == 4 and last["inputs"]["pack"] == 2
        # The store's text of a chunk is a summary, not the abbreviated dict.
        assert (
            value_text(first) == f"ChunkState(step=2, last_cost={first['last_cost']!r}, "
            "converged=False)"
        )
        assert pickle.loads(pickle.dumps(last)) == last

    def test_a_chunk_given_no_spec_fails_with_what_to_do(self):
        """A loop id where the spec belongs (as a loop stored before the typed spec
        passes it) fails at once and says what to pass instead."""
        from qflow.loops.workflow import run_chunk

        _, state = self._serving()
        with pytest.raises(QflowConfigError, match="takes a LoopSpec .* got str.*run them again"):
            run_chunk.fn("a1b2c3", dict(state), 2, last=False)
