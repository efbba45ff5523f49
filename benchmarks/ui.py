"""How fast the web UI is, on a store of 10,000 dispatches.

  list       time to the first byte of ``/`` and of ``/api/dispatches`` (first page,
             a search, a status filter and a deep page), over HTTP to a real server;
  page       a 1,000-node dispatch page rendered in Chromium (Debian's, through
             Playwright), from navigation until every node is drawn;
  events     a 2,000-electron fan-out dispatched with no page, with the list page
             open (following the event stream), and with its own dispatch page opened
             during the run (drawn, then following), alternated, as ratios.

Usage:
    python benchmarks/ui.py [--repeats 5] [--out benchmarks/results/ui.json]

Medians with min-max over the repeats; JSON beside the printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("QFLOW_HOME", tempfile.mkdtemp(prefix="qflow-ui-bench-"))

import qflow
from qflow._api import _runtime
from qflow.store.base import now_iso
from qflow.ui.app import create_app
from qflow.ui.security import Guard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import fanout


def fill(store, n: int) -> str:
    """``n`` finished dispatches of 5 nodes each, and one 1,000-node dispatch (its id)."""
    statuses = ["COMPLETED"] * 8 + ["FAILED", "CANCELLED"]
    for i in range(n):
        did = f"bench-{i:06d}"
        store.create_dispatch(
            {
                "dispatch_id": did,
                "name": f"experiment_{i % 37}",
                "status": statuses[i % 10],
                "created_at": now_iso(),
                "start_time": now_iso(),
                "end_time": now_iso(),
            },
            [
                {
                    "node_id": k,
                    "name": "step",
                    "kind": "electron",
                    "status": "COMPLETED",
                    "parents": repr([k - 1] if k else []),
                }
                for k in range(5)
            ],
        )
    big = "bench-1000-nodes"
    nodes = [
        {
            "node_id": 0,
            "name": "prepare",
            "kind": "electron",
            "status": "COMPLETED",
            "parents": "[]",
        }
    ]
    nodes += [
        {
            "node_id": k,
            "name": "evaluate",
            "kind": "electron",
            "status": "COMPLETED",
            "parents": "[0]",
        }
        for k in range(1, 999)
    ]
    nodes.append(
        {
            "node_id": 999,
            "name": "reduce",
            "kind": "electron",
            "status": "RUNNING",
            "parents": repr(list(range(1, 999))),
        }
    )
    store.create_dispatch(
        {
            "dispatch_id": big,
            "name": "thousand",
            "status": "RUNNING",
            "created_at": now_iso(),
            "start_time": now_iso(),
        },
        nodes,
    )
    return big


def serve(store) -> tuple[str, object]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(store, Guard.for_bind("127.0.0.1", port)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", srv


def first_byte(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        r.read(1)
        took = time.perf_counter() - t0
        r.read()
    return took


def summary(samples: list[float], unit: float = 1000) -> dict:
    return {
        "median": statistics.median(samples) * unit,
        "min": min(samples) * unit,
        "max": max(samples) * unit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dispatches", type=int, default=10_000)
    parser.add_argument("--out", default="benchmarks/results/ui.json")
    args = parser.parse_args(argv)
    store = _runtime().store
    big = fill(store, args.dispatches)
    base, _ = serve(store)
    results: dict[str, dict] = {}
    print(f"{args.dispatches:,} dispatches in the store; {args.repeats} repeats\n")
    print("| measure | median | min-max |\n|---|---:|---:|")
    for label, path in (
        ("list page /, first byte", "/"),
        ("/api/dispatches, first page", "/api/dispatches"),
        ("/api/dispatches?q=experiment_7", "/api/dispatches?q=experiment_7"),
        ("/api/dispatches?status=FAILED", "/api/dispatches?status=FAILED"),
        ("/api/dispatches?page=150", "/api/dispatches?page=150"),
    ):
        first_byte(base + path)  # warm
        s = summary([first_byte(base + path) for _ in range(args.repeats)])
        results[label] = s
        print(f"| {label} | {s['median']:.1f} ms | {s['min']:.1f}-{s['max']:.1f} ms |")

    chromium = shutil.which("chromium")
    if chromium is None:
        print("\nno chromium: run scripts/ensure_chromium.py for the browser measures")
    else:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            renders = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                page.goto(f"{base}/dispatch/{big}")
                page.wait_for_function("document.querySelectorAll('#graph .node').length === 1000")
                renders.append(time.perf_counter() - t0)
            s = results["1,000-node dispatch page in Chromium"] = summary(renders)
            print(
                f"| 1,000-node dispatch page in Chromium | {s['median']:.0f} ms | "
                f"{s['min']:.0f}-{s['max']:.0f} ms |"
            )

            qflow.dispatch_sync(fanout)(200)  # warm workers
            plain, listed, followed = [], [], []
            for _ in range(args.repeats):
                page.goto("about:blank")
                t0 = time.perf_counter()
                qflow.dispatch_sync(fanout)(2000)
                plain.append(time.perf_counter() - t0)
                page.goto(f"{base}/?q=fanout")  # open first: it follows the list live
                t0 = time.perf_counter()
                qflow.dispatch_sync(fanout)(2000)
                listed.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                did = qflow.dispatch(fanout)(2000)
                page.goto(f"{base}/dispatch/{did}")  # drawn during the run, then live
                qflow.get_result(did, wait=True)
                followed.append(time.perf_counter() - t0)
            for label, runs in (
                ("list page open", listed),
                ("its dispatch page opened and followed", followed),
            ):
                ratios = [f / p for f, p in zip(runs, plain)]
                s = results[f"fan-out 2,000 with {label} / without"] = {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "plain_s": plain,
                    "with_s": runs,
                }
                print(
                    f"| fan-out 2,000 with {label} / without | {s['median']:.2f}x | "
                    f"{s['min']:.2f}-{s['max']:.2f}x |"
                )
            browser.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dispatches": args.dispatches, "results": results}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
