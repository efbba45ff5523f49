"""``covalent._results_manager.results_manager``: ``get_result``, ``cancel``, and
``_delete_result`` (qflow's :func:`qflow.delete`)."""

from __future__ import annotations

from qflow._api import cancel, get_result
from qflow.retention import delete


def _delete_result(dispatch_id: str, *args: object, **kwargs: object) -> None:
    """Remove a dispatch, its nodes and blobs from the store (:func:`qflow.delete`)."""
    delete([dispatch_id])


__all__ = ["_delete_result", "cancel", "get_result"]
