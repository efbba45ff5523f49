"""Make the README's screenshots: a VQE dispatch's page and the dispatch list (and the
pages of a QAOA with restarts and an H2 scan).

Runs a small H2 VQE, a QAOA, a scan and a failing fan-out in a fresh ``QFLOW_HOME``,
serves the UI on
loopback and photographs it with Debian's Chromium (see ``scripts/ensure_chromium.py``).

Usage: python scripts/readme_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    os.environ["QFLOW_HOME"] = tempfile.mkdtemp(prefix="qflow-shots-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import uvicorn
    from playwright.sync_api import sync_playwright

    import qflow
    from qflow.algorithms import Molecule, qaoa_maxcut, scan_h2, vqe
    from qflow.runtime.process import current
    from qflow.ui.app import create_app
    from qflow.ui.security import Guard

    @qflow.electron
    def energy_at(point: int) -> float:
        if point == 7:
            raise ValueError(f"point {point}: SCF did not converge")
        return -1.1 + 0.001 * point

    @qflow.lattice
    def survey(n: int) -> list[float]:
        return [energy_at(i) for i in range(n)]

    res = vqe(Molecule.h2(), steps=40, pack=10, tags=["h2", "sto-3g"])
    ring = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)]
    qaoa = qaoa_maxcut(ring, p=2, steps=40, restarts=2, seed=1)
    scan = scan_h2([0.6, 0.74, 1.0], steps=30, plot=None)
    qflow.get_result(qflow.dispatch(survey)(60), wait=True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(current().store, Guard.for_bind("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    chromium = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensure_chromium.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/?token={app.guard.token}")
        page.wait_for_selector("#dispatches tbody tr")
        page.screenshot(path=str(out / "list-page.png"))
        page.goto(f"{base}/dispatch/{res.dispatch_id}")
        page.wait_for_selector("figure.chart")
        page.screenshot(path=str(out / "vqe-page.png"), full_page=True)
        for name, dispatch_id in (("qaoa", qaoa.dispatch_id), ("scan", scan.dispatch_id)):
            page.goto(f"{base}/dispatch/{dispatch_id}")
            page.wait_for_selector("figure.chart")
            page.screenshot(path=str(out / f"{name}-page.png"), full_page=True)
        browser.close()
    server.should_exit = True
    print(f"wrote list-page.png, vqe-page.png, qaoa-page.png and scan-page.png in {out}")


if __name__ == "__main__":
    main()
