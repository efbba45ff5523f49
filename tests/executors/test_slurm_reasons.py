"""Why a Slurm job failed, as the user is told it: no Slurm needed."""

import pytest

from qflow.executors.slurm import failure_reason


@pytest.mark.parametrize(
    ("state", "error", "expected"),
    [
        ("TIMEOUT", "", "hit its Slurm time limit of 1 min"),
        (
            "RUNNING",
            "Job not requeued because: timed-out and not checkpointable",
            "hit its Slurm time limit of 1 min",
        ),
        # The warning signal reached the job before submitit's handler existed.
        ("FAILED", "srun: error: vm: task 0: User defined signal 2", "hit its Slurm time limit"),
        ("CANCELLED by 0", "", "was cancelled"),
        ("FAILED", "ValueError: bad", "failed (state FAILED)"),
    ],
)
def test_failure_reason_names_the_time_limit_however_slurm_reports_it(state, error, expected):
    assert expected in failure_reason(state, error, 1)
