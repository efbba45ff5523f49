"""``covalent.executor.base``: the plugin base classes, under Covalent's module path."""

from qflow.executor import AsyncBaseExecutor, BaseExecutor

__all__ = ["AsyncBaseExecutor", "BaseExecutor"]
