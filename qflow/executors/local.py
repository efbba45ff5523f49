"""Electrons run in the dispatcher's own process, on a thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import ray

from qflow.core.task import TaskCall, execute_call
from qflow.executors.base import Executor, Submission, fetch_inputs, refuse_deps_pip


class LocalExecutor(Executor):
    """Runs the electron in the dispatching process: no Ray worker, no pickling of the
    function. Useful for quick glue steps and for debugging with breakpoints.

    Example:
        >>> import qflow
        >>> @qflow.electron(executor="local")
        ... def glue(x):
        ...     return x
    """

    @classmethod
    def affinity(cls) -> int:
        return 0

    def submit(self, call: TaskCall, deps: Sequence[Any]) -> Submission:
        refuse_deps_pip(
            call,
            'executor="local" (which runs electrons in the dispatching process)',
            'Use executor="ray" (the default): Ray builds a virtualenv with the packages for it.',
        )
        done: Future = Future()

        def work() -> None:
            try:
                values = fetch_inputs(deps)
                value, outcome = execute_call(call, values)
                outcome.value_ref = ray.put(value)
                done.set_result(outcome)
            except BaseException as exc:  # handed to the dispatcher, never swallowed
                done.set_exception(exc)

        threading.Thread(target=work, name=f"qflow-local-{call.label}", daemon=True).start()
        return Submission(done=done)
