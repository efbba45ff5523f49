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
    ray.init(num_cpus=4, resources={TEST_RESOURCE: 2}, include_dashboard=False,
             log_to_driver=False, namespace="qflow-tests")
    yield
    ray.shutdown()


@pytest.fixture
def qflow_home() -> str:
    return _HOME
