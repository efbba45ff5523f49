"""The public surface is exactly what __all__ lists."""

import qflow
import qflow.exceptions


def _public(module):
    return sorted(
        (
            n
            for n in vars(module)
            if not n.startswith("_") and not isinstance(getattr(module, n), type(qflow))
        ),
        key=str.casefold,
    )


def test_all_is_sorted_and_complete():
    """qflow.__all__ lists every public name, sorted."""
    assert qflow.__all__ == sorted(qflow.__all__, key=str.casefold)
    assert set(qflow.__all__) == set(_public(qflow)) - {"annotations"}


def test_exceptions_all_pinned():
    """Every exception is exported and derives from QflowError."""
    names = qflow.exceptions.__all__
    assert names == sorted(names)
    for name in names:
        assert issubclass(getattr(qflow.exceptions, name), qflow.QflowError)
    assert set(names) == {
        n for n in _public(qflow.exceptions) if isinstance(getattr(qflow.exceptions, n), type)
    } - {"annotations"}


def test_status_is_covalents():
    """qflow.status.X compares equal to Covalent's status strings."""
    for name in ("COMPLETED", "FAILED", "CANCELLED", "RUNNING", "NEW_OBJECT"):
        assert getattr(qflow.status, name) == name
