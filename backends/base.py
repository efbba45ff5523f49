"""The backend contract: one required method, ``make_device``."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class Backend(abc.ABC):
    """Where circuits run. Only :meth:`make_device` must be defined.

    A backend is built inside the Ray actor that uses it, never shipped as a device:
    executed lightning QNodes cannot be pickled, and building on the node that
    holds the hardware is the point. What travels is this small config object.

    Args:
        shots: None for exact expectation values, or a shot count.
        seed: seeds the device's sampling, so that a run with shots repeats exactly.
        resources: the Ray resource of the node this backend must run on, e.g.
            ``{"qpu:braket-us-east-1": 1}`` for a gateway node near a QPU.
        noise: for mixed-state backends (``default.mixed``, ``braket.local.dm``): a
            ``qml.NoiseModel``, or a probability p for a depolarising channel of
            strength p on every wire a gate acts on, after the gate.
        secrets: names of the secrets (``qflow secret set NAME``) the backend needs
            where its circuits run, e.g. a provider's API key: each loop chunk that
            uses the backend is granted them, in ``os.environ`` and ``qflow.secret``.
    """

    #: The registry name users pass, e.g. ``"lightning.qubit"``.
    name: ClassVar[str]
    #: The pip extra that installs what this backend needs.
    extra: ClassVar[str] = "quantum"
    #: The gradient method its QNodes use.
    diff_method: ClassVar[str] = "best"
    #: Whether its devices take the shots themselves (device plugins such as Braket's
    #: still do). PennyLane's own devices get them on the QNode: setting shots on a
    #: device is deprecated since PennyLane 0.45.
    shots_on_device: ClassVar[bool] = False
    #: Whether ``seed=`` reaches its devices' sampling.
    seedable: ClassVar[bool] = True
    #: Whether its devices simulate mixed states, so that ``noise=`` can be applied.
    supports_noise: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[Backend]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls) and "make_device" not in vars(cls):
            # cloudpickle rebuilding a backend defined in a script (shipped by value)
            # makes the class empty first and fills it in after: nothing to check or
            # register yet. A real class missing both still cannot be instantiated.
            return
        if getattr(cls.make_device, "__isabstractmethod__", False):
            raise TypeError(f"{cls.__name__} must define make_device(wires) -> device.")
        if not isinstance(cls.__dict__.get("name"), str):
            raise TypeError(f"{cls.__name__} must set a class attribute name = '<registry name>'.")
        Backend.registry[cls.name] = cls

    def __init__(
        self,
        *,
        shots: int | None = None,
        seed: int | None = None,
        resources: Mapping[str, float] | None = None,
        noise: Any = None,
        secrets: Sequence[str] | str = (),
    ) -> None:
        from qflow.exceptions import QflowConfigError
        from qflow.secrets.keep import secret_names

        if shots is not None and (not isinstance(shots, int) or shots <= 0):
            raise QflowConfigError(f"shots must be None or a positive int; got {shots!r}.")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise QflowConfigError(f"seed must be None or an int >= 0; got {seed!r}.")
        if seed is not None and not self.seedable:
            raise QflowConfigError(
                f"Backend {self.name} cannot be seeded: its sampling is "
                "not under qflow's control. Drop seed=, or use "
                "default.qubit or lightning.qubit for a reproducible run."
            )
        self.shots: int | None = shots
        self.seed: int | None = seed
        self.resources = dict(resources or {})
        self.noise = check_noise(noise, self)
        #: Secret names granted where the backend's circuits run (never values).
        self.secrets: tuple[str, ...] = secret_names(secrets)

    def __repr__(self) -> str:
        noise = "" if self.noise is None else f", noise={self.noise!r}"
        return f"{type(self).__name__}(shots={self.shots!r}, resources={self.resources!r}{noise})"

    def describe(self) -> dict[str, Any]:
        """The settings that decide this backend's numbers, as JSON-ready values (what a
        result records so that a run can be repeated)."""
        noise = (
            self.noise if self.noise is None or isinstance(self.noise, float) else repr(self.noise)
        )
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "shots": self.shots,
            "seed": self.seed,
            "noise": noise,
            "resources": dict(self.resources),
        }

    @abc.abstractmethod
    def make_device(self, wires: int) -> Any:
        """A PennyLane device with ``wires`` wires."""

    def ray_resources(self) -> dict[str, float]:
        """The custom Ray resources an actor using this backend must hold."""
        return dict(self.resources)

    def qnode(self, func: Any, device: Any, diff_method: str | None = None) -> Any:
        """A QNode of ``func`` on ``device`` (from :meth:`make_device`) with this backend's
        shots and gradient method (see :meth:`gradient_method`)."""
        import pennylane as qml

        method = self.gradient_method(diff_method)
        if self.shots is None or self.shots_on_device:
            qnode = qml.QNode(func, device, diff_method=method)
        else:
            qnode = qml.QNode(func, device, diff_method=method, shots=self.shots)
        return qml.add_noise(qnode, noise_model(self.noise)) if self.noise is not None else qnode

    def gradient_method(self, requested: str | None = None) -> str:
        """The ``diff_method`` for QNodes on this backend: ``requested`` if given (and
        valid here), else the backend's exact method, or parameter-shift with shots.

        Raises:
            QflowConfigError: an unknown method, or one that needs exact simulation
                (adjoint, backprop) on a backend with shots.

        Example:
            >>> from qflow.backends import get_backend
            >>> get_backend("lightning.qubit").gradient_method()
            'adjoint'
            >>> get_backend("lightning.qubit", shots=1000).gradient_method()
            'parameter-shift'
        """
        from qflow.exceptions import QflowConfigError

        if requested is None:
            return (
                "parameter-shift"
                if self.shots is not None and self.diff_method in EXACT_ONLY
                else self.diff_method
            )
        if requested not in DIFF_METHODS:
            raise QflowConfigError(
                f"diff_method {requested!r} is not one of {', '.join(DIFF_METHODS)}."
            )
        if requested in EXACT_ONLY and self.shots is not None:
            raise QflowConfigError(
                f"diff_method={requested!r} needs exact simulation, but backend {self.name} "
                f"runs with shots={self.shots}. Use diff_method='parameter-shift' (or "
                "'spsa'), or shots=None."
            )
        return requested


#: Gradient methods PennyLane QNodes accept.
DIFF_METHODS = (
    "best",
    "adjoint",
    "backprop",
    "parameter-shift",
    "finite-diff",
    "spsa",
    "hadamard",
    "device",
)
#: Methods that differentiate the exact state, so cannot work with shots.
EXACT_ONLY = frozenset({"adjoint", "backprop"})


def check_noise(noise: Any, backend: Backend) -> Any:
    """``noise`` as a backend keeps it: None, a float probability or a NoiseModel."""
    from qflow.exceptions import QflowConfigError

    if noise is None:
        return None
    if not backend.supports_noise:
        noisy = sorted(name for name, cls in Backend.registry.items() if cls.supports_noise)
        raise QflowConfigError(
            f"Backend {backend.name} simulates pure states, so it cannot apply noise={noise!r}. "
            f"Use a mixed-state backend: {', '.join(noisy)}."
        )
    if isinstance(noise, int | float) and not isinstance(noise, bool):
        if not 0.0 <= float(noise) <= 1.0:
            raise QflowConfigError(
                f"noise as a number is a depolarising probability in [0, 1]; got {noise!r}."
            )
        return float(noise)
    import pennylane as qml

    if isinstance(noise, qml.NoiseModel):
        return noise
    raise QflowConfigError(
        f"noise is a depolarising probability (e.g. 0.01) or a "
        f"qml.NoiseModel; got {type(noise).__name__} {noise!r}."
    )


def noise_model(noise: Any) -> Any:
    """The NoiseModel for a backend's ``noise``: a float p is a depolarising channel of
    strength p on each wire of every gate, after the gate."""
    import pennylane as qml

    if not isinstance(noise, float):
        return noise
    every_gate = qml.BooleanFn(lambda op, **_: True, "every gate")
    return qml.NoiseModel({every_gate: qml.noise.partial_wires(qml.DepolarizingChannel, noise)})
