"""Run qflow in child processes, as separate scripts and CLI calls would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

QFLOW = [sys.executable, "-m", "qflow.cli"]

#: A script that dispatches a 60 s electron, waits until it runs, prints "ID <id>" and
#: exits (ending the dispatch FAILED, as a script exiting early does).
LONG_DISPATCH = """
    import time, qflow
    @qflow.electron
    def slow(x):
        time.sleep(x)
        return x
    @qflow.lattice
    def flow(x):
        return slow(slow(x))
    dispatch_id = qflow.dispatch(flow)(60)
    while qflow.get_result(dispatch_id, status_only=True)["status"] != "RUNNING":
        time.sleep(0.05)
    print("ID", dispatch_id, flush=True)
"""

#: A script that runs a one-electron lattice to the end and prints "ID <id>" and
#: "RESULT <result>".
ONE_ELECTRON = """
    import qflow
    @qflow.electron
    def one():
        return 1
    @qflow.lattice
    def flow():
        return one()
    res = qflow.dispatch_sync(flow)()
    print("ID", res.dispatch_id)
    print("RESULT", res.result)
"""


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a script whose results store is ``home``; no RAY_ADDRESS."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"QFLOW_HOME": str(home), "QFLOW_NUM_CPUS": "2", **extra})
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def printed_id(out: subprocess.CompletedProcess) -> str:
    """The dispatch id a script printed ("ID <id>"); if it printed none, the failure
    names what it wrote to stderr instead."""
    if "ID " not in out.stdout:
        raise AssertionError(
            f"The script printed no dispatch id (exit {out.returncode}). stdout:\n"
            f"{out.stdout[-2000:]}\nstderr:\n{out.stderr[-4000:]}"
        )
    return out.stdout.split("ID ", 1)[1].split()[0]


def script(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def spawn(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        script(code), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def read_line(proc: subprocess.Popen, prefix: str, timeout: float = 120) -> str:
    """The first stdout line of ``proc`` that starts with ``prefix``, without it."""
    import selectors
    import time

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=1):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise AssertionError(
        f"no {prefix!r} line from the child; stderr:\n"
        f"{proc.stderr.read()[-3000:] if proc.poll() is not None else ''}"
    )
