"""A Slurm job (a real local Slurm) is granted its electron's secret where it runs:
submitit's pickles and logs on the shared folder hold the name, never the value."""

from __future__ import annotations

import os
import pathlib

import pytest

import qflow
from qflow.executors import SlurmExecutor
from qflow.secrets import SecretKeep
from tests.secrets.test_canary import _canary, _leaks

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_a_slurm_job_gets_its_secret_and_writes_none(qflow_home, tmp_path):
    canary = _canary()
    SecretKeep.of_home(pathlib.Path(qflow_home)).set("SLURM_CANARY", canary)
    folder = tmp_path / "submitit"

    slurm = SlurmExecutor(time=2, folder=folder)

    @qflow.electron(executor=slurm, secrets=["SLURM_CANARY"])
    def shows():
        key = os.environ["SLURM_CANARY"]
        print("job uses", key)
        return len(key)

    @qflow.electron(executor=slurm, secrets=["SLURM_CANARY"])
    def rejects(length):
        raise ValueError(f"rejected {os.environ['SLURM_CANARY']} of {length}")

    @qflow.lattice
    def flow():
        return rejects(shows())

    res = qflow.dispatch_sync(flow)()
    assert res.status == "FAILED"
    node, failed = res.get_node_result(0), res.get_node_result(1)
    assert node["output"].get_deserialized() == len(canary)
    assert "job uses [secret SLURM_CANARY]" in node["stdout"]
    assert f"rejected [secret SLURM_CANARY] of {len(canary)}" in failed["error"]
    assert canary not in repr(node) + repr(failed)
    assert any(folder.rglob("*.pkl"))  # what submitit wrote is there to search
    home = pathlib.Path(qflow_home)
    assert _leaks(canary, [folder, home], home / "secrets") == []
