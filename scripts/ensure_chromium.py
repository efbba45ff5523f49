#!/usr/bin/env python3
"""Print the path of a Chromium for the browser tests, installing Debian's package
(as root, with apt-get) when there is none.

Playwright's own ``playwright install`` downloads a browser from a CDN; this uses the
distribution's ``chromium`` instead, which Playwright drives through
``executable_path``.

Exit status: 0 with the path on stdout; 3 when Chromium is missing and cannot be
installed here (not root, or no apt-get), with the reason on stderr; 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

NAMES = ("chromium", "chromium-browser")
CANNOT_INSTALL = 3


def find() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def main() -> int:
    path = find()
    if path:
        print(path)
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        why = "this user is not root" if os.geteuid() != 0 else "there is no apt-get"
        print(f"Chromium is not installed and {why}, so it cannot be installed here. "
              "Install the chromium package to run the browser tests.", file=sys.stderr)
        return CANNOT_INSTALL
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, timeout=1200).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=1200)
        out = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:
            print(f"apt-get install chromium failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
    path = find()
    if path is None:
        print("apt-get installed chromium but no chromium binary is on PATH.", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
