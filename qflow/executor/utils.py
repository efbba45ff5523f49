"""``covalent.executor.utils``: ``get_context`` for the running electron."""

from qflow.compat import get_context

__all__ = ["get_context"]
