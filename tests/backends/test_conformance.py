"""Every backend in the registry passes the same checks (a conformance suite)."""

import numpy as np
import pennylane as qml
import pytest

from qflow.backends import Backend, get_backend
from qflow.exceptions import BackendError, QflowConfigError

# braket.aws.qubit needs AWS credentials and a network; it has its own tests below.
OFFLINE = sorted(n for n in Backend.registry if n != "braket.aws.qubit")


@pytest.fixture(params=OFFLINE)
def backend(request):
    kwargs = {"round_trip_ms": 1} if request.param == "simulated.qpu" else {}
    return get_backend(request.param, **kwargs)


def test_bell_expectation(backend):
    """A Bell pair gives <Z0 Z1> = 1 and <Z0> = 0."""
    dev = backend.make_device(2)

    @qml.qnode(dev, diff_method=backend.diff_method)
    def bell():
        qml.Hadamard(0)
        qml.CNOT([0, 1])
        return qml.expval(qml.PauliZ(0) @ qml.PauliZ(1)), qml.expval(qml.PauliZ(0))

    zz, z = bell()
    assert np.isclose(zz, 1.0, atol=1e-6) and np.isclose(z, 0.0, atol=1e-6)


def test_gradient(backend):
    """d<Z>/dθ of RX(θ) is -sin θ with the backend's gradient method."""
    from pennylane import numpy as pnp

    dev = backend.make_device(1)

    @qml.qnode(dev, diff_method=backend.diff_method)
    def f(theta):
        qml.RX(theta, wires=0)
        return qml.expval(qml.PauliZ(0))

    theta = pnp.array(0.3, requires_grad=True)
    assert np.isclose(qml.grad(f)(theta), -np.sin(0.3), atol=1e-6)


def test_config_pickles(backend):
    """The backend config (not the device) is what travels to actors."""
    import cloudpickle

    again = cloudpickle.loads(cloudpickle.dumps(backend))
    assert type(again) is type(backend) and again.ray_resources() == backend.ray_resources()


def test_unknown_backend_lists_valid_and_extra():
    """An unknown name lists the valid names and the extra to install."""
    with pytest.raises(
        QflowConfigError,
        match=r"'ibm.qpu'.*default.qubit.*lightning.qubit"
        r".*qflow-runtime\[quantum\]",
    ):
        get_backend("ibm.qpu")


def test_bad_options():
    """Bad options say what they got."""
    with pytest.raises(QflowConfigError, match="shots must be None or a positive int; got -5"):
        get_backend("default.qubit", shots=-5)
    with pytest.raises(QflowConfigError, match="Invalid options for backend 'default.qubit'"):
        get_backend("default.qubit", colour="blue")
    with pytest.raises(QflowConfigError, match="Latencies must be numbers >= 0"):
        get_backend("simulated.qpu", round_trip_ms=-1)


def test_subclass_contract():
    """A backend without make_device or a name is refused when defined."""
    with pytest.raises(TypeError, match="must define make_device"):

        class NoDevice(Backend):
            name = "x.none"

    with pytest.raises(TypeError, match="must set a class attribute name"):

        class NoName(Backend):
            def make_device(self, wires):
                return None


class TestSimulatedQPU:
    def test_latency_only_off_the_qpu_node(self):
        """Off the gateway node each batch pays the round trip; queue delay is always paid."""
        qpu = get_backend("simulated.qpu", inner="default.qubit", round_trip_ms=20, queue_ms=5)
        assert qpu.delay_s() == pytest.approx(0.025)  # the test node has no QPU resource
        near = get_backend(
            "simulated.qpu", inner="default.qubit", round_trip_ms=20, queue_ms=5, resource="CPU"
        )  # every node holds CPU
        assert near.delay_s() == pytest.approx(0.005)

    @pytest.mark.parametrize("inner", ["default.qubit", "lightning.qubit"])
    def test_every_batch_pays_the_delay(self, inner):
        """Forward and gradient calls each pay the round trip, whatever the inner device."""
        import time

        from pennylane import numpy as pnp

        qpu = get_backend("simulated.qpu", inner=inner, round_trip_ms=40)
        dev = qpu.make_device(1)

        @qml.qnode(dev, diff_method=qpu.diff_method)
        def f(x):
            qml.RX(x, wires=0)
            return qml.expval(qml.PauliZ(0))

        t0 = time.perf_counter()
        qml.grad(f)(pnp.array(0.1, requires_grad=True))
        assert qpu.batches >= 1
        assert time.perf_counter() - t0 >= 0.04 * qpu.batches

    def test_parameter_shift_batches_in_one_call(self):
        """A gradient needing several circuits reaches the backend as one batch."""
        from pennylane import numpy as pnp

        qpu = get_backend("simulated.qpu", inner="default.qubit", round_trip_ms=0)
        dev = qpu.make_device(2)

        @qml.qnode(dev, diff_method="parameter-shift")
        def f(p):
            qml.RX(p[0], wires=0)
            qml.RY(p[1], wires=1)
            qml.CNOT([0, 1])
            return qml.expval(qml.PauliZ(0) + qml.PauliX(1))

        qml.grad(f)(pnp.array([0.1, 0.2], requires_grad=True))
        assert 1 <= qpu.batches <= 2  # forward pass + one batch of 4 shifted circuits


class TestBraketAws:
    """Managed Braket devices cannot exist here; the device constructor is MOCKED below."""

    ARN = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"

    def test_bad_arn(self):
        """A missing or malformed ARN says what an ARN looks like."""
        with pytest.raises(QflowConfigError, match="needs device_arn='arn:aws:braket:"):
            get_backend("braket.aws.qubit", device_arn="sv1")

    def test_no_credentials_is_clear(self, monkeypatch, tmp_path):
        """Without AWS credentials the error says how to get them or go offline."""
        for var in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
        ):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        backend = get_backend("braket.aws.qubit", device_arn=self.ARN)
        with pytest.raises(BackendError, match="needs AWS credentials.*braket.local.qubit"):
            backend.make_device(2)

    def test_with_credentials_opens_device_by_arn(self, monkeypatch):
        """With credentials the ARN reaches braket.aws.qubit (MOCK: no AWS account here)."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        seen = {}

        def fake_device(name, **kwargs):  # the mocked part: a managed AWS device
            seen.update(name=name, **kwargs)
            return "device"

        monkeypatch.setattr(qml, "device", fake_device)
        backend = get_backend("braket.aws.qubit", device_arn=self.ARN, shots=10)
        assert backend.make_device(3) == "device"
        assert seen == {"name": "braket.aws.qubit", "device_arn": self.ARN, "wires": 3, "shots": 10}
        assert backend.ray_resources() == {"qpu:braket-us-east-1": 1}
        assert "not-a-real-secret" not in repr(backend)


SCRIPT_BACKEND = """
import pennylane as qml
from qflow.backends import Backend
from qflow.variational import minimize

class ScriptBackend(Backend):  # defined in __main__: it must travel by value
    name = "script.sim"

    def make_device(self, wires):
        return qml.device("default.qubit", wires=wires, shots=self.shots)

def circuit(p):
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))

print("COST", minimize(circuit, [0.3], wires=1, steps=4, pack=2,
                       backend=ScriptBackend()).final_cost)
"""


@pytest.mark.slow
def test_a_backend_defined_in_a_script_ships_by_value(tmp_path):
    """Issue 11: a Backend subclass from a script runs in the loop's actor."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QFLOW_HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT_BACKEND],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.split("COST", 1)[1].split()[0]) < 0.98


def test_backends_are_found_through_entry_points(tmp_path, monkeypatch):
    """An installed package offers a backend in the qflow.backends group."""
    (tmp_path / "epbackend.py").write_text(
        "import pennylane as qml\n"
        "from qflow.backends import Backend\n"
        "class EntryBackend(Backend):\n"
        "    name = 'entry.sim'\n"
        "    def make_device(self, wires):\n"
        "        return qml.device('default.qubit', wires=wires)\n"
    )
    info = tmp_path / "epbackend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epbackend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[qflow.backends]\nentry.sim = epbackend:EntryBackend\nbroken.sim = epbackend:nope\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = get_backend("entry.sim")
    assert type(backend).__name__ == "EntryBackend" and backend.make_device(2).wires.tolist() == [
        0,
        1,
    ]
    with pytest.raises(QflowConfigError, match="'broken.sim' is offered by 'epbackend:nope'"):
        get_backend("broken.sim")
    with pytest.raises(QflowConfigError, match="Valid backends are:.*entry.sim"):
        get_backend("nope.sim")
