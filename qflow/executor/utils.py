"""``covalent.executor.utils``: ``get_context`` for the running electron."""

from qflow.covalent.config import get_context

__all__ = ["get_context"]
