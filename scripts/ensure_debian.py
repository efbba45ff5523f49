#!/usr/bin/env python3
"""Print the path of a program the tests need, installing its Debian package (as root,
with apt-get) when it is missing.

Usage: ``ensure_debian.py PACKAGE [PROGRAM ...]`` (PROGRAM defaults to PACKAGE).

Exit status: 0 with the path on stdout; 3 when the program is missing and cannot be
installed here (not root, or no apt-get), with the reason on stderr; 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CANNOT_INSTALL = 3


def find(programs: tuple[str, ...]) -> str | None:
    for name in programs:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure(package: str, programs: tuple[str, ...]) -> int:
    path = find(programs)
    if path:
        print(path)
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        why = "this user is not root" if os.geteuid() != 0 else "there is no apt-get"
        print(
            f"{programs[0]} is not installed and {why}, so it cannot be installed here. "
            f"Install the {package} package to run the tests that need it.",
            file=sys.stderr,
        )
        return CANNOT_INSTALL
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, env=env, capture_output=True, timeout=1200).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=1200)
        out = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:
            print(f"apt-get install {package} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
    path = find(programs)
    if path is None:
        print(f"apt-get installed {package} but {programs[0]} is not on PATH.", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(ensure(sys.argv[1], tuple(sys.argv[2:]) or (sys.argv[1],)))
