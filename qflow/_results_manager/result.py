"""``covalent._results_manager.result``: the :class:`qflow.Result` class."""

from qflow.result import Result

__all__ = ["Result"]
