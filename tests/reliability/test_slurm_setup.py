"""The project's own local Slurm: it skips cleanly where it cannot be installed, and
`-m "not slurm"` starts none."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location(
        "local_slurm", ROOT / "scripts" / "local_slurm.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_not_root_without_slurm_cannot_install(monkeypatch, tmp_path, capsys):
    mod = _script()
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(mod.os, "geteuid", lambda: 1000)
    with pytest.raises(mod.CannotInstall, match="not root"):
        mod.ensure_packages()
    assert mod.main(["start", "--base", str(tmp_path)]) == mod.CANNOT_INSTALL
    assert "cannot be installed" in capsys.readouterr().err


def test_no_apt_cannot_install(monkeypatch):
    mod = _script()
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(mod.os, "geteuid", lambda: 0)
    with pytest.raises(mod.CannotInstall, match="no apt-get"):
        mod.ensure_packages()


def test_stop_without_start_touches_nothing(tmp_path, capsys):
    mod = _script()
    assert mod.main(["stop", "--base", str(tmp_path)]) == 0
    assert "nothing was started here" in capsys.readouterr().out


@pytest.mark.slow
def test_not_slurm_deselects_every_slurm_case_and_starts_none(tmp_path):
    """Unmarked cases of a parametrised test with a Slurm case do not start Slurm."""
    base = tmp_path / "slurm-base"
    env = {k: v for k, v in __import__("os").environ.items() if k != "SLURM_CONF"}
    env["LOCAL_SLURM_BASE"] = str(base)
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "not slurm",
            "-p",
            "no:cacheprovider",
            "tests/executors",
            "tests/test_cli.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stdout[-3000:]
    ids = collected.stdout.splitlines()
    assert not [i for i in ids if "test_conformance.py" in i and "slurm" in i]
    assert not [i for i in ids if "test_slurm.py" in i]
    assert [i for i in ids if "test_conformance.py" in i and "[local" in i]
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "not slurm",
            "-p",
            "no:cacheprovider",
            "tests/executors/test_conformance.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert not base.exists(), "a Slurm was started for unmarked tests"


def test_stop_leaves_daemons_started_by_others(tmp_path, capsys):
    """A Slurm someone else started (another owner tag) is left running."""
    import json

    mod = _script()
    (tmp_path / "started").write_text(json.dumps({"slurmd": "manual", "munged": "manual"}))
    assert mod.main(["stop", "--base", str(tmp_path), "--owner", "pytest-1"]) == 0
    assert "nothing was started here by 'pytest-1'" in capsys.readouterr().out
    assert json.loads((tmp_path / "started").read_text()) == {
        "slurmd": "manual",
        "munged": "manual",
    }


def test_stop_hands_daemons_to_a_session_still_using_them(tmp_path, capsys):
    """Two test sessions overlap on one Slurm: the first to end must not stop it under
    the other (nor cancel its jobs); the other becomes the owner and stops it later."""
    import json
    import os

    mod = _script()
    (tmp_path / "started").write_text(json.dumps({"slurmctld": "pytest-1", "munged": "pytest-1"}))
    users = tmp_path / "users"
    users.mkdir()
    (users / "pytest-1").write_text("999999999")  # this session, ending now
    (users / "pytest-2").write_text(str(os.getpid()))  # still running: this process
    (users / "pytest-3").write_text("999999998")  # a session that died without stopping
    assert mod.main(["stop", "--base", str(tmp_path), "--owner", "pytest-1"]) == 0
    assert "handed to 'pytest-2'" in capsys.readouterr().out
    assert json.loads((tmp_path / "started").read_text()) == {
        "slurmctld": "pytest-2",
        "munged": "pytest-2",
    }
    assert sorted(p.name for p in users.iterdir()) == ["pytest-2"]
