"""One Ray per test session, and a private QFLOW_HOME."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest

# Set before anything imports qflow, so every store opens under the test folder.
_HOME = tempfile.mkdtemp(prefix="qflow-test-home-")
os.environ["QFLOW_HOME"] = _HOME
os.environ.pop("RAY_ADDRESS", None)
# Ray workers inherit the environment: let them import `tests.*` like pytest does.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)

# Under pytest-xdist, each worker's Ray (and every head its tests start) keeps its
# sessions and its announced address in a folder of its own: a head announced by one
# worker's test is never found by the scripts of the other's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["RAY_TMPDIR"] = f"/tmp/qflow-ray-{os.environ['PYTEST_XDIST_WORKER']}"
    os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)

# As qflow sets it for the embedded Ray it starts (qflow.runtime.ray_cluster.ensure_ray).
os.environ.setdefault("RUNTIME_ENV_RETRY_TIMES", "1")

import ray  # noqa: E402

#: A custom resource the session cluster offers, for per-electron resource tests.
TEST_RESOURCE = "qflow_test_slot"


@pytest.fixture(scope="session", autouse=True)
def ray_session() -> Iterator[None]:
    """The one local Ray every test shares (4 logical CPUs on a 2-core box: tests sleep).

    Afterwards the Ray sessions this test session made (this Ray's, and those of the
    heads its tests started) are deleted: their logs, environments and spilled objects
    took gigabytes a run, and a developer's disk filled after a few dozen runs."""
    started = time.time()
    ray.init(
        address="local",
        num_cpus=4,
        resources={TEST_RESOURCE: 2},
        include_dashboard=False,
        log_to_driver=False,
        namespace="qflow-tests",
    )
    yield
    # A test may leave a task running: stop qflow's completion watcher first, as qflow's
    # exit hook does, so that it is not inside ray.wait when Ray goes down.
    from qflow import _completions

    _completions.close()
    ray.shutdown()
    sessions = os.path.join(os.environ.get("RAY_TMPDIR", tempfile.gettempdir()), "ray")
    for path in glob.glob(os.path.join(sessions, "session_*")):
        if not os.path.islink(path) and os.path.getmtime(path) >= started - 1:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def qflow_home() -> str:
    return _HOME


_SLURM_SCRIPT = os.path.join(_ROOT, "scripts", "local_slurm.py")
_CANNOT_INSTALL = 3  # scripts/local_slurm.py: Slurm cannot be installed here


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[str]:
    """A real single-node Slurm with accounting, started here and stopped afterwards.

    ``scripts/local_slurm.py`` installs the Debian packages on first use. Where it
    cannot (not root, no apt-get) the Slurm tests skip with its reason; any other
    failure to start fails them.
    """
    import subprocess
    import sys

    # The daemons use fixed ports, so there is one local Slurm per machine.
    base = os.environ.get("LOCAL_SLURM_BASE", "/tmp/qflow-slurm")
    # Tagged with this session, so that stop leaves a Slurm someone else started alone.
    cmd = [
        sys.executable,
        _SLURM_SCRIPT,
        "--base",
        base,
        "--owner",
        f"pytest-{os.getpid()}",
        "--pid",
        str(os.getpid()),
    ]
    out = subprocess.run(
        [*cmd, "--cpus", "4", "start"], capture_output=True, text=True, timeout=1200
    )
    if out.returncode == _CANNOT_INSTALL:
        pytest.skip(out.stderr.strip())
    if out.returncode != 0:
        pytest.fail(f"local Slurm did not start:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    os.environ["SLURM_CONF"] = os.path.join(base, "etc", "slurm.conf")
    yield base
    subprocess.run([*cmd, "stop"], capture_output=True, timeout=300)
    os.environ.pop("SLURM_CONF", None)


@pytest.fixture(autouse=True)
def _slurm_for_marked(request: pytest.FixtureRequest) -> None:
    """Tests marked `slurm`, and only those, get the session's local Slurm.

    (Asked for here rather than by editing ``item.fixturenames``: that list is shared
    by every case of a parametrised test, so unmarked cases would start Slurm too.)
    """
    if request.node.get_closest_marker("slurm"):
        request.getfixturevalue("local_slurm")


def debian_program(package: str) -> str:
    """The path of ``package``'s program, installed by ``scripts/ensure_debian.py`` when
    missing; the calling test skips, saying why, where it cannot be installed."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, os.path.join(_ROOT, "scripts", "ensure_debian.py"), package],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode == 3:
        pytest.skip(out.stderr.strip())
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
