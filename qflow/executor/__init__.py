"""Covalent's executor plugin API: ``ct.executor.LocalExecutor``, ``BaseExecutor`` and
``AsyncBaseExecutor``.

A Covalent executor plugin defines ``run(self, function, args, kwargs, task_metadata)``
(``async def`` for :class:`AsyncBaseExecutor`). qflow runs each electron that names
such an executor as a Ray task, like any other, and inside that task hands the
electron's function to the plugin's ``run``: a plugin written from Covalent's
"creating custom executors" guide runs unchanged. ``task_metadata`` carries
``dispatch_id``, ``node_id`` and ``results_dir``.

qflow's own executors (``"ray"``, ``"local"``, ``"slurm"``) are in
:mod:`qflow.executors`.

Example:
    >>> import qflow as ct
    >>> class DoubleExecutor(ct.executor.BaseExecutor):
    ...     def run(self, function, args, kwargs, task_metadata):
    ...         return 2 * function(*args, **kwargs)
    >>> @ct.electron(executor=DoubleExecutor())
    ... def three():
    ...     return 3
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qflow.exceptions import QflowConfigError, QflowWarning

__all__ = ["AsyncBaseExecutor", "BaseExecutor", "DaskExecutor", "LocalExecutor"]

#: Why qflow has no Dask executor, and what to use instead.
DASK_ADVICE = (
    "qflow runs every electron on Ray; it has no Dask executor. Leave executor= unset "
    '(or use executor="ray") and set num_cpus=/resources= for placement; use '
    'executor="slurm" for a batch cluster.'
)


class BaseExecutor:
    """A Covalent executor plugin: subclasses define ``run``.

    Args:
        log_stdout: a file the electron's stdout is appended to, after it runs.
        log_stderr: a file the electron's stderr is appended to, after it runs.
        cache_dir, time_limit, retries, **kwargs: Covalent's other plugin arguments;
            accepted, and named in a :class:`qflow.exceptions.QflowWarning` when set,
            because qflow does not use them (Ray retries with ``max_retries=``).
    """

    #: Marks plugins (see :func:`is_plugin`).
    __qflow_plugin__ = True

    def __init__(
        self,
        log_stdout: str = "",
        log_stderr: str = "",
        cache_dir: str = "",
        time_limit: Any = None,
        retries: int = 0,
        **kwargs: Any,
    ) -> None:
        self.log_stdout, self.log_stderr = log_stdout, log_stderr
        ignored = {
            k: v
            for k, v in {
                "cache_dir": cache_dir,
                "time_limit": time_limit,
                "retries": retries,
                **kwargs,
            }.items()
            if v
        }
        if ignored:
            warnings.warn(
                f"{type(self).__name__}: qflow does not use {sorted(ignored)} (Covalent "
                "executor arguments); they are ignored. Use max_retries= on the electron "
                "for retries.",
                QflowWarning,
                stacklevel=2,
            )
        self.cache_dir, self.time_limit, self.retries = cache_dir, time_limit, retries

    def run(
        self,
        function: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        task_metadata: dict[str, Any],
    ) -> Any:
        """Run ``function(*args, **kwargs)``; return its value or raise its exception."""
        raise NotImplementedError(
            f"{type(self).__name__} must define run(self, function, args, kwargs, task_metadata)."
        )

    def setup(self, task_metadata: dict[str, Any]) -> None:
        """Called before :meth:`run`."""

    def teardown(self, task_metadata: dict[str, Any]) -> None:
        """Called after :meth:`run`, even when it raised."""

    def get_dispatch_context(self, *args: Any, **kwargs: Any) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def _qflow_run(
        self,
        function: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        task_metadata: dict[str, Any],
    ) -> Any:
        self.setup(task_metadata)
        try:
            return self.run(function, args, kwargs, task_metadata)
        finally:
            self.teardown(task_metadata)

    def _qflow_logs(self, stdout: str, stderr: str) -> None:
        """Append what the electron printed to ``log_stdout``/``log_stderr``."""
        for path, text in ((self.log_stdout, stdout), (self.log_stderr, stderr)):
            if path and text:
                with Path(path).expanduser().open("a") as f:
                    f.write(text)


class AsyncBaseExecutor(BaseExecutor):
    """A Covalent plugin whose ``run`` (and ``setup``/``teardown``) are coroutines."""

    async def run(
        self,
        function: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        task_metadata: dict[str, Any],
    ) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define async run(self, "
            "function, args, kwargs, task_metadata)."
        )

    async def setup(self, task_metadata: dict[str, Any]) -> None:  # type: ignore[override]
        """Awaited before :meth:`run`."""

    async def teardown(self, task_metadata: dict[str, Any]) -> None:  # type: ignore[override]
        """Awaited after :meth:`run`."""

    def _qflow_run(
        self,
        function: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        task_metadata: dict[str, Any],
    ) -> Any:
        async def whole() -> Any:
            await _maybe_await(self.setup(task_metadata))
            try:
                return await _maybe_await(self.run(function, args, kwargs, task_metadata))
            finally:
                await _maybe_await(self.teardown(task_metadata))

        return asyncio.run(whole())


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class LocalExecutor(BaseExecutor):
    """Covalent's LocalExecutor: the electron runs as a Ray task on this machine's
    cluster (qflow's default), with Covalent's ``log_stdout``/``log_stderr`` honoured.

    Example:
        >>> import qflow as ct
        >>> ex = ct.executor.LocalExecutor()
        >>> ex.run(lambda x: x + 1, [1], {}, {"dispatch_id": "d", "node_id": 0})
        2
    """

    def run(
        self,
        function: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        task_metadata: dict[str, Any],
    ) -> Any:
        return function(*args, **kwargs)


class DaskExecutor:
    """Refused: qflow runs on Ray. The error says what to use instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise QflowConfigError(f"DaskExecutor is not available. {DASK_ADVICE}")


def is_plugin(spec: Any) -> bool:
    """Whether ``spec`` is a Covalent-style executor plugin instance."""
    return getattr(type(spec), "__qflow_plugin__", False) is True
