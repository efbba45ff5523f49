"""Electrons outside lattices, and their options."""

import pytest

import qflow
from qflow.exceptions import QflowConfigError


@qflow.electron
def add(a, b):
    """Add two numbers."""
    return a + b


@qflow.electron(num_cpus=1)
def boom(x):
    raise ValueError(f"bad {x}")


class TestPlainCalls:
    def test_outside_lattice_is_plain_function(self):
        """Outside a lattice an electron returns the plain result."""
        assert add(2, 3) == 5

    def test_same_exceptions(self):
        """Outside a lattice it raises the function's own exception."""
        with pytest.raises(ValueError, match="bad 1"):
            boom(1)

    def test_name_and_doc_kept(self):
        """Both decorator forms keep __name__ and __doc__."""
        assert add.__name__ == "add" and add.__doc__ == "Add two numbers."
        assert boom.__name__ == "boom"

    def test_electron_inside_electron_runs_inline(self):
        """An electron called inside another electron is not a node."""

        @qflow.electron
        def outer(x):
            return add(x, 1) * 2

        @qflow.lattice
        def flow(x):
            return outer(x)

        res = qflow.dispatch_sync(flow)(3)
        assert res.result == 8
        assert list(res.get_all_node_outputs()) == [
            "outer(0)",
            ":parameter:3(1)",
            ":postprocess:reconstruct(2)",
        ]


class TestOptions:
    def test_unknown_option_lists_valid(self):
        """An unknown keyword names itself and lists the valid ones."""
        with pytest.raises(QflowConfigError, match="num_cpu.*Valid options are:.*num_cpus"):
            qflow.electron(num_cpu=1)(lambda: 1)

    def test_unknown_executor_fails_its_node_with_the_valid_names(self):
        """As in Covalent, an unknown executor name fails that node when it runs (not
        the module that declares it); the error lists the registered executors."""

        @qflow.electron(executor="nosuch")
        def odd():
            return 1

        @qflow.electron
        def fine():
            return 2

        @qflow.lattice
        def flow():
            return odd(), fine()

        res = qflow.dispatch_sync(flow)()
        assert res.status == "FAILED"
        assert res.get_node_result(1)["status"] == "COMPLETED"
        error = res.get_node_result(0)["error"]
        assert "Unknown executor 'nosuch'" in error and "local, ray" in error

    def test_executor_of_a_wrong_type(self):
        with pytest.raises(QflowConfigError, match="executor must be a name such as 'ray'"):
            qflow.electron(executor=42)(lambda: 1)

    def test_negative_cpus(self):
        """Invalid numbers say what they got."""
        with pytest.raises(QflowConfigError, match="num_cpus must be a number >= 0; got -1"):
            qflow.electron(num_cpus=-1)(lambda: 1)

    def test_non_callable(self):
        """Wrapping a non-callable is a clear input error."""
        with pytest.raises(qflow.exceptions.QflowInputError, match="got int 3"):
            qflow.electron(3)
