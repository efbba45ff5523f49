#!/usr/bin/env python3
"""Print the path of a Chromium for the browser tests, installing Debian's package
(as root, with apt-get) when there is none.

Playwright's own ``playwright install`` downloads a browser from a CDN; this uses the
distribution's ``chromium`` instead, which Playwright drives through
``executable_path``. Exit status as :mod:`ensure_debian`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ensure_debian import ensure

if __name__ == "__main__":
    sys.exit(ensure("chromium", ("chromium", "chromium-browser")))
