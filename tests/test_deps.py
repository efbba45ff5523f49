"""DepsBash, DepsPip, DepsCall, call_before and call_after."""

import pytest

import qflow
from qflow.exceptions import QflowInputError


def _setup(value):
    return {"configured": value}


def _write(path, text):
    with open(path, "a") as f:
        f.write(text)


class TestDeps:
    def test_call_before_injects_retval(self, tmp_path):
        """retval_keyword passes the hook's return value to the electron."""

        @qflow.electron(
            call_before=[qflow.DepsCall(_setup, args=[5], retval_keyword="cfg")],
            call_after=[qflow.DepsCall(_write, args=[str(tmp_path / "a"), "done"])],
        )
        def task(x, cfg=None):
            return x, cfg

        @qflow.lattice
        def flow(x):
            return task(x)

        assert qflow.dispatch_sync(flow)(1).result == (1, {"configured": 5})
        assert (tmp_path / "a").read_text() == "done"

    def test_bash_dep_runs_first(self, tmp_path):
        """A bash dep runs where the electron runs, before it."""
        target = tmp_path / "made"

        @qflow.electron(deps_bash=f"echo hi > {target}")
        def read():
            return target.read_text().strip()

        @qflow.lattice
        def flow():
            return read()

        assert qflow.dispatch_sync(flow)().result == "hi"

    def test_failing_bash_dep_fails_without_running(self, tmp_path):
        """The failing command is in the error, and the electron did not run."""
        ran = tmp_path / "ran"

        @qflow.electron(deps_bash=qflow.DepsBash(["true", "exit 3"]))
        def task():
            ran.write_text("yes")

        @qflow.lattice
        def flow():
            return task()

        res = qflow.dispatch_sync(flow)()
        assert res.status == "FAILED"
        assert "DepsBash command 'exit 3' exited with 3" in res.error
        assert not ran.exists()

    def test_lattice_level_deps_apply_to_all(self, tmp_path):
        """Deps given on a lattice apply to each of its electrons."""
        log = tmp_path / "log"

        @qflow.electron
        def one():
            return 1

        @qflow.lattice(call_before=[qflow.DepsCall(_write, args=[str(log), "b"])])
        def flow():
            return one(), one()

        assert qflow.dispatch_sync(flow)().result == (1, 1)
        assert log.read_text() == "bb"

    def test_deps_pip_becomes_runtime_env(self):
        """DepsPip becomes Ray's runtime_env pip list, merged with runtime_env."""
        el = qflow.electron(deps_pip=qflow.DepsPip(["six"]), runtime_env={"env_vars": {"A": "1"}})(
            lambda: 1
        )
        assert el.options.full_runtime_env() == {
            "env_vars": {"A": "1"},
            "pip": {
                "packages": ["six"],
                "pip_check": False,
                "pip_install_options": ["--disable-pip-version-check", "--only-binary=:all:"],
            },
        }

    def test_a_deps_pip_among_the_hooks_joins_the_electrons_environment(self):
        """call_before/call_after DepsPip never run pip in the process: they merge."""
        el = qflow.electron(
            call_before=[qflow.DepsPip(["a==1"]), qflow.DepsCall(print)],
            call_after=qflow.DepsPip(["b==2"]),
            deps_pip=["c"],
            runtime_env={"pip": ["d"]},
        )(lambda: 1)
        assert el.options.deps_pip.packages == ["c", "a==1", "b==2"]
        assert len(el.options.call_before) == 1 and el.options.call_after == ()
        assert el.options.full_runtime_env()["pip"]["packages"] == ["d", "c", "a==1", "b==2"]
        with pytest.raises(QflowInputError, match="never installs|can break qflow"):
            qflow.DepsPip(["x"]).install()

    def test_executors_that_cannot_isolate_refuse_deps_pip(self):
        @qflow.electron(executor="local", deps_pip=["six"])
        def here():
            return 1

        @qflow.lattice
        def flow():
            return here()

        res = qflow.dispatch_sync(flow)()
        assert res.status == "FAILED"
        assert 'executor="local"' in res.error and "['six']" in res.error

        @qflow.electron(executor="slurm", call_before=[qflow.DepsPip(["six"])])
        def on_slurm():
            return 1

        @qflow.lattice
        def slurm_flow():
            return on_slurm()

        res = qflow.dispatch_sync(slurm_flow)()  # refused before any job is submitted
        assert res.status == "FAILED"
        assert "the Slurm executor" in res.error and "qflow slurm up" in res.error

    @pytest.mark.slow
    def test_covalent_how_to_pins_an_older_version_and_leaves_this_environment_alone(self):
        """Covalent's how-to "Add pip dependencies to an electron", with a pin older than
        what is installed here, plus ``deps_pip=`` with a package missing here (all one
        environment): the electron sees them; ``pip freeze`` of the Python running the
        tests is byte-for-byte the same afterwards."""
        import subprocess
        import sys

        import networkx

        assert networkx.__version__ != "2.8.6"
        with pytest.raises(ImportError):
            __import__("tinydb")

        def freeze():
            return subprocess.run(
                [sys.executable, "-m", "pip", "freeze"], capture_output=True, check=True
            ).stdout

        before = freeze()

        @qflow.electron(
            call_before=[qflow.DepsPip(packages=["networkx==2.8.6"])],
            call_after=[qflow.DepsPip(packages=["six==1.16.0"])],
            deps_pip=qflow.DepsPip(["tinydb==4.8.0"]),
        )
        def versions():
            import networkx
            import six
            import tinydb

            return networkx.__version__, six.__version__, tinydb.__version__

        @qflow.lattice
        def flow():
            return versions()

        res = qflow.dispatch_sync(flow)()
        assert res.result == ("2.8.6", "1.16.0", "4.8.0"), res.error
        assert freeze() == before

    @pytest.mark.slow
    def test_a_pin_without_a_wheel_fails_the_node_with_pips_message(self):
        """numpy 1.22.4 has no wheel for Python 3.11: refused at once, never built."""
        import time

        @qflow.electron(deps_pip=["numpy==1.22.4"])
        def old():
            return 1

        @qflow.lattice
        def flow():
            return old()

        t0 = time.monotonic()
        res = qflow.dispatch_sync(flow)()
        assert res.status == "FAILED"
        assert "['numpy==1.22.4']" in res.error and "could not be installed" in res.error
        assert "pip index versions" in res.error
        assert time.monotonic() - t0 < 150

    def test_bad_hooks(self):
        """Hooks must be callables or DepsCall objects."""
        with pytest.raises(QflowInputError, match="call_before takes DepsCall"):
            qflow.electron(call_before=[42])(lambda: 1)
        with pytest.raises(QflowInputError, match="DepsBash takes shell commands as strings"):
            qflow.DepsBash([1])


class TestCovalentSemantics:
    """Deps behave as in Covalent 0.240 (its own workflow_stack tests, import swapped)."""

    def test_electron_deps_replace_the_lattices(self, tmp_path):
        """An electron's own deps_bash/call_before replace the lattice's; the others
        inherit them."""
        log = tmp_path / "log"

        @qflow.electron(
            deps_bash=[f"printf e >> {log}"],
            call_before=[qflow.DepsCall(_write, args=[str(log), "E"])],
        )
        def own():
            return 1

        @qflow.electron
        def inherits():
            return 2

        @qflow.lattice(
            deps_bash=qflow.DepsBash([f"printf l >> {log}"]),
            call_before=[qflow.DepsCall(_write, args=[str(log), "L"])],
        )
        def flow():
            return qflow.wait(inherits(), [own()])

        assert qflow.dispatch_sync(flow)().result == 2
        assert sorted(log.read_text()) == sorted("eElL")

    def test_repeated_retval_keyword_collects_a_list(self):
        def identity(y):
            return y

        @qflow.electron(
            call_before=[qflow.DepsCall(identity, args=[i], retval_keyword="y") for i in (1, 2, 3)]
        )
        def task(y=None):
            return y

        @qflow.electron(call_before=[qflow.DepsCall(identity, args=[5], retval_keyword="y")])
        def single(x, y=0):
            return x, y

        @qflow.lattice
        def flow():
            return task(), single(2)

        assert qflow.dispatch_sync(flow)().result == ([1, 2, 3], (2, 5))

    def test_deps_objects_inside_call_before(self, tmp_path):
        marker = tmp_path / "made"

        @qflow.electron(call_before=[qflow.DepsBash([f"touch {marker}"]), qflow.DepsPip([])])
        def task():
            return marker.exists()

        @qflow.lattice
        def flow():
            return task()

        assert qflow.dispatch_sync(flow)().result is True

    def test_deps_pip_reqs_path_and_dict_forms(self, tmp_path):
        reqs = tmp_path / "requirements.txt"
        reqs.write_text("six==1.16.0  # pinned\n\n# a comment\ntinydb\n")
        assert qflow.DepsPip(packages=["a"], reqs_path=str(reqs)).packages == [
            "a",
            "six==1.16.0",
            "tinydb",
        ]
        with pytest.raises(QflowInputError, match="cannot read reqs_path"):
            qflow.DepsPip(reqs_path=str(tmp_path / "missing.txt"))
        bash = qflow.DepsBash(["ls -l"])
        assert qflow.DepsBash().from_dict(bash.to_dict()).commands == ["ls -l"]
