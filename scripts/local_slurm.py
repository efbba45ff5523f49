#!/usr/bin/env python3
"""A private single-node Slurm with accounting, for qflow's tests and benchmarks.

``python scripts/local_slurm.py start`` installs the Debian packages it needs when
they are missing (apt, as root), then starts munge, MariaDB, slurmdbd, slurmctld and
slurmd with every file under ``$LOCAL_SLURM_BASE`` (default ``/tmp/qflow-slurm``):
nothing is written to /etc, so clients need ``SLURM_CONF=<base>/etc/slurm.conf``.
It records which daemons *it* started in ``<base>/started``, under an ``--owner`` tag
(the test session passes its own); ``stop --owner TAG`` stops exactly those, by pid,
after cancelling the jobs still queued. A daemon that was already running, started
by anyone else, is used and left alone.

Why accounting: without slurmdbd, ``sacct`` fails and submitit never learns that a
job was cancelled or hit its time limit, so ``job.result()`` would block forever.

Exit codes: 0 ready (or stopped), 3 Slurm cannot be installed here (not root, no
apt-get: callers skip), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CANNOT_INSTALL = 3
# Debian puts the daemons in /usr/sbin, which a root shell's PATH may lack (su, cron,
# CI runners): look there too, for which() and for every command this script runs.
for _sbin in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
    if _sbin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + _sbin
PACKAGES = [
    "slurmctld",
    "slurmd",
    "slurm-client",
    "munge",
    "slurmdbd",
    "mariadb-server-core",
    "mariadb-client-core",
]
BINARIES = [
    "slurmctld",
    "slurmd",
    "sinfo",
    "munged",
    "mungekey",
    "slurmdbd",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
]
PORTS = {"ctld": 6817, "slurmd": 6818, "dbd": 6819, "db": 3307}
DB_USER, DB_PASS = "slurm", "slurm-local-only"


class CannotInstall(RuntimeError):
    """Slurm is missing and this machine cannot install it."""


def _log(msg: str) -> None:
    print(f"[local-slurm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _run(
    *cmd: str, env: dict | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {out.returncode}: {(out.stderr or out.stdout)[-2000:]}"
        )
    return out


def ensure_packages() -> None:
    """Install the Debian packages when a binary is missing."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise CannotInstall(
            f"Slurm is not installed ({', '.join(missing)} missing) and this "
            "user is not root, so it cannot be installed with apt-get."
        )
    if shutil.which("apt-get") is None:
        raise CannotInstall(
            f"Slurm is not installed ({', '.join(missing)} missing) and "
            "there is no apt-get to install it with."
        )
    _log(f"installing {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ("apt-get", "install", "-y", "--no-install-recommends", *PACKAGES)
    if _run(*install, env=env, check=False, timeout=900).returncode != 0:
        _run("apt-get", "update", env=env, timeout=900)
        _run(*install, env=env, timeout=900)


def _alive(pid: int, name: str) -> bool:
    """``pid`` is a live, non-zombie process whose program is ``name``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and os.path.basename(argv0) == name


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class LocalSlurm:
    """The daemons of one private Slurm under ``base``."""

    def __init__(
        self, base: Path, cpus: int | None = None, owner: str = "manual", pid: int | None = None
    ) -> None:
        self.base = base
        self.owner = owner
        #: The process that uses the Slurm while this owner holds it (a test session).
        self.user_pid = pid if pid is not None else os.getppid()
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = base / "etc" / "slurm.conf"
        self.sock = base / "munge" / "munge.socket.2"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.node = socket.gethostname().split(".")[0]
        self.pidfiles = {
            "munged": base / "munge" / "munged.pid",
            "mariadbd": base / "run" / "mariadbd.pid",
            "slurmdbd": base / "run" / "slurmdbd.pid",
            "slurmctld": base / "run" / "slurmctld.pid",
            "slurmd": base / "run" / "slurmd.pid",
        }

    # ------------------------------------------------------------ helpers
    def running(self, name: str) -> bool:
        pid = _pid(self.pidfiles[name])
        return pid is not None and _alive(pid, name)

    def _wait(self, what: str, probe, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if probe():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"timed out after {timeout:.0f} s waiting for {what}; "
                    f"logs are in {self.base / 'log'}"
                )
            time.sleep(0.2)

    def _ok(self, *cmd: str) -> bool:
        return subprocess.run(cmd, env=self.env, capture_output=True, timeout=20).returncode == 0

    # ------------------------------------------------------------ config
    def write_config(self) -> None:
        for sub in ("etc", "state", "spool", "run", "log", "db", "munge"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket whose parent folders are not searchable by all.
        for d in (self.base, self.base / "munge"):
            d.chmod(0o755)
        key = self.base / "munge" / "munge.key"
        if not key.exists() or key.stat().st_size == 0:
            _run("mungekey", "--create", f"--keyfile={key}")
        key.chmod(0o600)
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        mem_mb = min(4096, mem_mb * 9 // 10)
        overrides = "SlurmdParameters=config_overrides" if self.cpus > (os.cpu_count() or 1) else ""
        b = self.base
        self.conf.write_text(f"""\
# Written by qflow's scripts/local_slurm.py.
ClusterName=qflow
SlurmctldHost={self.node}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={PORTS["ctld"]}
SlurmdPort={PORTS["slurmd"]}
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool
SlurmctldPidFile={self.pidfiles["slurmctld"]}
SlurmdPidFile={self.pidfiles["slurmd"]}
SlurmctldLogFile={b}/log/slurmctld.log
SlurmdLogFile={b}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Back-to-back jobs otherwise wait about 3 s each.
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={PORTS["dbd"]}
# slurmctld reaches slurmdbd through the munge socket named here, not AuthInfo.
AccountingStoragePass={self.sock}
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
InactiveLimit=0
MinJobAge=300
{overrides}
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        dbd = self.conf.with_name("slurmdbd.conf")
        dbd.touch(mode=0o600)
        dbd.chmod(0o600)  # slurmdbd refuses a readable config
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.sock}
DbdHost=localhost
DbdPort={PORTS["dbd"]}
SlurmUser=root
LogFile={b}/log/slurmdbd.log
PidFile={self.pidfiles["slurmdbd"]}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={PORTS["db"]}
StorageUser={DB_USER}
StoragePass={DB_PASS}
StorageLoc=slurm_acct_db
""")
        grants = "".join(
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{h}' IDENTIFIED BY '{DB_PASS}';\n"
            f"GRANT ALL ON slurm_acct_db.* TO '{DB_USER}'@'{h}';\n"
            for h in ("127.0.0.1", "localhost")
        )
        (b / "db" / "init.sql").write_text(grants)

    # ------------------------------------------------------------ daemons
    def _started(self) -> dict[str, str]:
        """Daemon name -> the owner tag of the ``start`` that started it."""
        try:
            data = json.loads((self.base / "started").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _mark_started(self, name: str) -> None:
        (self.base / "started").write_text(json.dumps({**self._started(), name: self.owner}))

    # Two test sessions can overlap on one machine, and the daemons use fixed ports, so
    # they share one Slurm. Each registers as a user; the last one out stops it.
    def _register_user(self) -> None:
        users = self.base / "users"
        users.mkdir(parents=True, exist_ok=True)
        (users / self.owner).write_text(str(self.user_pid))

    def _other_users(self) -> list[str]:
        alive = []
        for f in sorted((self.base / "users").glob("*")):
            if f.name == self.owner:
                continue
            try:
                pid = int(f.read_text().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                f.unlink(missing_ok=True)  # its session is gone
                continue
            alive.append(f.name)
        return alive

    def start(self) -> None:
        ensure_packages()
        self.write_config()
        self._register_user()
        b = self.base
        if not self.running("munged"):
            _log("starting munged")
            _run(
                "munged",
                f"--key-file={b / 'munge' / 'munge.key'}",
                f"--socket={self.sock}",
                f"--pid-file={self.pidfiles['munged']}",
                f"--log-file={b / 'log' / 'munged.log'}",
                f"--seed-file={b / 'munge' / 'munged.seed'}",
            )
            self._mark_started("munged")
        self._wait(
            "munged",
            lambda: (
                subprocess.run(
                    f"munge -S {self.sock} -n | unmunge -S {self.sock}",
                    shell=True,
                    capture_output=True,
                ).returncode
                == 0
            ),
        )

        data = b / "db" / "data"
        if not (data / "mysql").is_dir():
            _log("initialising the MariaDB data folder")
            shutil.rmtree(data, ignore_errors=True)
            _run(
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                timeout=300,
            )
        if not self.running("mariadbd"):
            _log("starting mariadbd")
            # mariadbd has no daemon mode of its own: a new session detaches it.
            subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    "--user=root",
                    f"--datadir={data}",
                    f"--socket={b / 'db' / 'mysqld.sock'}",
                    f"--port={PORTS['db']}",
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    f"--pid-file={self.pidfiles['mariadbd']}",
                    f"--log-error={b / 'log' / 'mariadbd.log'}",
                    "--innodb-buffer-pool-size=64M",
                    f"--init-file={b / 'db' / 'init.sql'}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._mark_started("mariadbd")
        self._wait(
            "MariaDB",
            lambda: (
                self._ok(
                    "mariadb",
                    "--no-defaults",
                    "-h",
                    "127.0.0.1",
                    "-P",
                    str(PORTS["db"]),
                    "-u",
                    DB_USER,
                    f"-p{DB_PASS}",
                    "-e",
                    "select 1",
                )
                and self.running("mariadbd")
            ),
        )

        for name, probe in (
            ("slurmdbd", ("sacctmgr", "-n", "-P", "show", "cluster")),
            ("slurmctld", ("scontrol", "ping")),
        ):
            if not self.running(name):
                _log(f"starting {name}")
                _run(name, env=self.env)  # both daemonise themselves
                self._mark_started(name)
            self._wait(name, lambda probe=probe: self._ok(*probe))
        if not self.running("slurmd"):
            _log("starting slurmd")
            _run("slurmd", env=self.env)
            self._mark_started("slurmd")
        self._wait(f"node {self.node} to be idle", self._node_ready)
        self._wait(
            "cluster registration in slurmdbd",
            lambda: (
                "qflow|"
                in _run(
                    "sacctmgr",
                    "-n",
                    "-P",
                    "show",
                    "cluster",
                    "format=cluster,controlport",
                    env=self.env,
                    check=False,
                ).stdout
            ),
        )
        (b / "env.sh").write_text(f"export SLURM_CONF={self.conf}\n")
        _log(f"ready; export SLURM_CONF={self.conf}")

    def _node_ready(self) -> bool:
        state = _run(
            "sinfo", "-h", "-n", self.node, "-o", "%T", env=self.env, check=False
        ).stdout.strip()
        if state.startswith(("down", "drain", "fail")):
            _run(
                "scontrol",
                "update",
                f"nodename={self.node}",
                "state=resume",
                env=self.env,
                check=False,
            )
        return state.rstrip("*") in ("idle", "mixed", "allocated")

    def stop(self) -> None:
        (self.base / "users" / self.owner).unlink(missing_ok=True)
        record = self._started()
        started = [name for name, owner in record.items() if owner == self.owner]
        others = self._other_users()
        if started and others:
            # Still in use: hand our daemons to a session that uses them, which stops
            # them when it ends, rather than pulling Slurm from under its jobs.
            heir = others[0]
            (self.base / "started").write_text(
                json.dumps({k: heir if v == self.owner else v for k, v in record.items()})
            )
            _log(f"{', '.join(started)} still used by {', '.join(others)}: handed to {heir!r}")
            return
        if not started:
            _log(f"nothing was started here by {self.owner!r}; nothing to stop")
            return
        if self.running("slurmctld"):
            jobs = _run("squeue", "-h", "-o", "%A", env=self.env, check=False).stdout.split()
            if jobs:
                _run("scancel", *jobs, env=self.env, check=False)
                self._wait_quiet(15)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            if name not in started:
                continue
            pid = _pid(self.pidfiles[name])
            if pid is None or not _alive(pid, name):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid, name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid, name):
                os.kill(pid, signal.SIGKILL)
            _log(f"stopped {name} (pid {pid})")
        rest = {k: v for k, v in record.items() if k not in started}
        (self.base / "started").write_text(json.dumps(rest))

    def _wait_quiet(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (
            time.monotonic() < deadline
            and _run("squeue", "-h", "-o", "%A", env=self.env, check=False).stdout.strip()
        ):
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--base", default=os.environ.get("LOCAL_SLURM_BASE", "/tmp/qflow-slurm"))
    parser.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="CPUs the node advertises (more than exist lets jobs share)",
    )
    parser.add_argument(
        "--owner",
        default="manual",
        help="tag of what `start` starts; `stop` stops only that tag's daemons",
    )
    parser.add_argument(
        "--pid",
        type=int,
        default=None,
        help="the process using Slurm under this tag (default: the caller); "
        "`stop` leaves Slurm up while another tag's process is alive",
    )
    args = parser.parse_args(argv)
    slurm = LocalSlurm(Path(args.base), cpus=args.cpus, owner=args.owner, pid=args.pid)
    try:
        slurm.start() if args.action == "start" else slurm.stop()
    except CannotInstall as exc:
        print(f"local Slurm unavailable: {exc}", file=sys.stderr)
        return CANNOT_INSTALL
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"local Slurm failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
