"""One Ray per test session, and a private QFLOW_HOME."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

# Set before anything imports qflow, so every store opens under the test folder.
_HOME = tempfile.mkdtemp(prefix="qflow-test-home-")
os.environ["QFLOW_HOME"] = _HOME
os.environ.pop("RAY_ADDRESS", None)
# Ray workers inherit the environment: let them import `tests.*` like pytest does.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)

# Each test session (and each pytest-xdist worker) keeps its Rays' sessions and their
# announced address in a folder of its own: a head announced by one worker's test is
# never found by the scripts of the other's, and a pytest run inside a test (see
# tests/reliability/test_slurm_setup.py) never shares, nor deletes, this run's. Short,
# since Ray's socket paths under it must fit in 107 bytes.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
_RAY_TMPDIR = f"/tmp/qf-ray-{_RUN[:8]}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
os.environ["RAY_TMPDIR"] = _RAY_TMPDIR

# As qflow sets it for the embedded Ray it starts (qflow.runtime.ray_cluster.ensure_ray).
os.environ.setdefault("RUNTIME_ENV_RETRY_TIMES", "1")

import ray  # noqa: E402

#: A custom resource the session cluster offers, for per-electron resource tests.
TEST_RESOURCE = "qflow_test_slot"


@pytest.fixture(scope="session", autouse=True)
def ray_session() -> Iterator[None]:
    """The one local Ray every test shares (4 logical CPUs on a 2-core box: tests sleep).

    Afterwards this test session's ``RAY_TMPDIR`` is deleted, with the Ray sessions of
    this Ray and of the heads and scripts its tests started: their logs, environments
    and spilled objects took gigabytes a run, and a developer's disk filled after a few
    dozen runs."""
    os.makedirs(_RAY_TMPDIR, exist_ok=True)  # here: xdist's controller runs no tests
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
    shutil.rmtree(_RAY_TMPDIR, ignore_errors=True)


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
