"""What a loop's circuit is checked for before any compute is spent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.loops.optimizers import ScipyOptimizer

__all__ = ["check_circuit", "ranges", "unused_params"]


def check_circuit(
    circuit: Callable[..., Any], params: np.ndarray, wires: int, optimizer: Any
) -> None:
    """Fail before spending compute: a QNode where its body belongs, params the circuit
    never reads, wires out of range, or no scalar to differentiate."""
    import pennylane as qml

    if isinstance(circuit, qml.QNode):
        raise QflowInputError(
            f"minimize takes the circuit function (a QNode body: gates, then one "
            f"qml.expval), and builds the QNode itself on the backend's device; got the QNode "
            f"{getattr(circuit, '__name__', circuit)!r}. Pass its function instead: "
            f"circuit=my_qnode.func, or drop the @qml.qnode decorator."
        )
    if not callable(circuit):
        raise QflowInputError(
            f"circuit must be a function of the params array; got "
            f"{type(circuit).__name__} {circuit!r}."
        )
    if params.ndim != 1 or params.size == 0:
        raise QflowInputError(
            f"params must be a non-empty 1-D array of floats; got shape {params.shape}."
        )
    try:
        tape = qml.tape.make_qscript(circuit)(params)
    except Exception as exc:
        raise QflowInputError(
            f"The circuit could not be built with params of shape {np.shape(params)}: "
            f"{exc!r}. Check that it takes the params array as its one argument."
        ) from exc
    used = sorted(w for w in tape.wires if not (isinstance(w, int) and 0 <= w < wires))
    if used:
        raise QflowConfigError(
            f"The circuit uses wires {used}, but wires={wires} gives 0..{wires - 1}. Pass "
            f"wires={max(tape.wires.tolist(), key=lambda w: w if isinstance(w, int) else -1) + 1}"
            " or fix the circuit."
        )
    unused = unused_params(circuit, params.size)
    if unused:
        raise QflowInputError(
            f"The circuit never reads params {ranges(unused)} of the {params.size} given, so "
            f"the optimizer would move them for nothing (and report a cost that does not "
            f"depend on them). Pass exactly the params the circuit uses "
            f"({params.size - len(unused)} here), or use them in the circuit."
        )
    gradient_based = hasattr(optimizer, "compute_grad") or (
        isinstance(optimizer, ScipyOptimizer)
        and optimizer.method.upper() in ("BFGS", "L-BFGS-B", "CG", "NEWTON-CG")
    )
    ms = tape.measurements
    if gradient_based and (len(ms) != 1 or not isinstance(ms[0], qml.measurements.ExpectationMP)):
        raise QflowInputError(
            f"{type(optimizer).__name__} needs a differentiable scalar cost, but the circuit "
            f"returns {[type(m).__name__ for m in ms]}. Return one qml.expval(H), or use a "
            "gradient-free optimizer (a callable (cost_fn, params) -> (params, cost))."
        )


def unused_params(circuit: Callable[..., Any], n: int) -> list[int]:
    """Indices of params no gate depends on; [] when that cannot be told.

    The circuit's tape is built (nothing is simulated) at a random point and the
    Jacobian of its gate parameters with respect to ``params`` is taken with autograd:
    an all-zero column is a param the circuit never reads. Circuits that autograd
    cannot trace are not judged.
    """
    import autograd
    import pennylane as qml
    from pennylane import numpy as pnp

    def gate_params(p: Any) -> Any:
        tape = qml.tape.make_qscript(circuit)(p)
        traced = [
            qml.math.reshape(x, (-1,))
            for x in tape.get_parameters(trainable_only=False)
            if isinstance(x, autograd.numpy.numpy_boxes.ArrayBox)
        ]
        return pnp.concatenate(traced) if traced else pnp.zeros(1) * p[0]

    point = pnp.array(np.random.default_rng(12345).uniform(0.1, 1.0, n), requires_grad=True)
    try:
        jac = np.asarray(autograd.jacobian(gate_params)(point))
    except Exception:  # not traceable (or raises at this point): no verdict
        return []
    if jac.ndim != 2 or jac.shape[1] != n or not np.all(np.isfinite(jac)):
        return []
    return [i for i in range(n) if not np.any(jac[:, i])]


def ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0..2, 5``."""
    out, start = [], None
    for i, idx in enumerate(indices):
        if start is None:
            start = idx
        if i + 1 == len(indices) or indices[i + 1] != idx + 1:
            out.append(str(start) if start == idx else f"{start}..{idx}")
            start = None
    return ", ".join(out)
