"""Every script in examples/ runs as a user would run it, in its own process."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(name, *args, tmp_path):
    env = {**os.environ, "QFLOW_HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)  # each script starts its own private Ray, as for a user
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_every_example_is_listed_and_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    listed = (EXAMPLES / "README.md").read_text()
    tested = pathlib.Path(__file__).read_text()
    assert scripts and all(f"`{s}`" in listed and f'"{s}"' in tested for s in scripts)


@pytest.mark.slow
def test_vqe_shots_noise(tmp_path):
    out = _run("vqe_shots_noise.py", "--json", "shots.json", tmp_path=tmp_path)
    assert "exact (full CI)      -1.137270 Ha" in out and "±" in out
    saved = json.loads((tmp_path / "shots.json").read_text())
    assert saved["inputs"]["backend"]["shots"] == 4000 and saved["energy_stderr"] > 0
    noise = [float(line.split()[3]) for line in out.splitlines() if "depolarising" in line]
    assert len(noise) == 2 and -1.1373 < noise[0] < noise[1]


@pytest.mark.slow
def test_qaoa_sweep(tmp_path):
    out = _run("qaoa_sweep.py", "--nodes", "6", "--max-p", "2", tmp_path=tmp_path)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "2"]
    assert float(rows[1][2]) >= float(rows[0][2]) - 1e-3  # deeper is no worse


@pytest.mark.slow
def test_covalent_workflow(tmp_path):
    out = _run("covalent_workflow.py", tmp_path=tmp_path)
    assert "COMPLETED (0.74, -1.0)" in out


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_workflow(tmp_path):
    out = _run("slurm_workflow.py", tmp_path=tmp_path)
    assert out.startswith("COMPLETED ")
