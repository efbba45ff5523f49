"""One Ray per test session, and a private QFLOW_HOME."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Set before anything imports qflow, so every store opens under the test folder.
_HOME = tempfile.mkdtemp(prefix="qflow-test-home-")
os.environ["QFLOW_HOME"] = _HOME
os.environ.pop("RAY_ADDRESS", None)
# Ray workers inherit the environment: let them import `tests.*` like pytest does.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)

import ray  # noqa: E402

#: A custom resource the session cluster offers, for per-electron resource tests.
TEST_RESOURCE = "qflow_test_slot"


@pytest.fixture(scope="session", autouse=True)
def ray_session() -> Iterator[None]:
    """The one local Ray every test shares (4 logical CPUs on a 2-core box: tests sleep)."""
    ray.init(address="local", num_cpus=4, resources={TEST_RESOURCE: 2}, include_dashboard=False,
             log_to_driver=False, namespace="qflow-tests")
    yield
    ray.shutdown()


@pytest.fixture
def qflow_home() -> str:
    return _HOME


_SLURM_RECIPE = os.path.join(os.path.dirname(_ROOT), "shared", "local-slurm")


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[str]:
    """A real single-node Slurm with accounting, started here and stopped afterwards.

    Uses the recipe in ../shared/local-slurm (it installs the Debian packages on first
    use). Tests marked `slurm` get it automatically; if it cannot start they fail.
    """
    import subprocess

    start = os.path.join(_SLURM_RECIPE, "start.sh")
    if not os.path.exists(start):
        pytest.fail(f"Slurm tests need the local Slurm recipe at {_SLURM_RECIPE}.")
    # The recipe's daemons use fixed ports, so there is one local Slurm per machine.
    base = os.environ.get("LOCAL_SLURM_BASE", "/tmp/local-slurm")
    env = {**os.environ, "LOCAL_SLURM_BASE": base, "LOCAL_SLURM_CPUS": "4"}
    out = subprocess.run(["bash", start], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        pytest.fail(f"local Slurm did not start:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    os.environ["SLURM_CONF"] = os.path.join(base, "etc", "slurm.conf")
    yield base
    subprocess.run(["bash", os.path.join(_SLURM_RECIPE, "stop.sh")], env=env,
                   capture_output=True, timeout=300)
    os.environ.pop("SLURM_CONF", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test marked `slurm` runs with the session's local Slurm."""
    for item in items:
        if item.get_closest_marker("slurm") and "local_slurm" not in item.fixturenames:
            item.fixturenames.insert(0, "local_slurm")
