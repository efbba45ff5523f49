"""Large data through a qflow server: how many copies each side holds, and how fast.

A head is started with ``qflow start --listen 127.0.0.1:PORT`` in a fresh home, with
its body limit raised to fit. A client with QFLOW_SERVER and its own home then, each
round, dispatches ``half(a)`` for a float64 array ``a`` of --mb megabytes and reads the
output (as big) back:

  upload      dispatch(...) returning: the client's pickle streamed onto the socket,
              the server's spool, unpickling, recording and hand-over to its service
  download    result.result: the output streamed from the server's blob file

Memory is the rise of each process's peak over the round's start, in copies of the
array (the baseline: 1.00 is one copy). The client's is its peak RSS; the server's
HTTP process's is its private (anonymous) memory sampled every 5 ms, since its peak
RSS also counts Ray's shared-memory object store, where the graph goes to the service.

Every figure is the median of --repeats rounds with its min-max spread.

Usage: python benchmarks/large_io.py [--mb 1000] [--repeats 3]
    [--out benchmarks/results/large_io.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import started_head

CLIENT = r"""
import json, sys, threading, time
import numpy as np
import qflow

def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1e3

def reset(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")

class Sampled:
    def __init__(self, pid):
        self.pid, self.stop = pid, threading.Event()
        self.start = self.peak = status(pid, "RssAnon")
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
    def run(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, status(self.pid, "RssAnon"))
    def rise(self):
        self.stop.set(); self.thread.join()
        return self.peak - self.start

@qflow.electron
def half(a):
    return a * 0.5

@qflow.lattice
def flow(a):
    return half(a)

server, mb, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rounds = []
for _ in range(repeats):
    a = np.ones(mb * 1_000_000 // 8)
    reset("self")
    before, server_mem = status("self", "VmHWM"), Sampled(server)
    t0 = time.perf_counter()
    dispatch_id = qflow.dispatch(flow)(a)
    up_s = time.perf_counter() - t0
    up, server_up = status("self", "VmHWM") - before, server_mem.rise()
    del a
    result = qflow.get_result(dispatch_id, wait=True, timeout=600)
    assert result.status == "COMPLETED", result.error
    reset("self")
    before, server_mem = status("self", "VmHWM"), Sampled(server)
    t0 = time.perf_counter()
    out = result.result
    down_s = time.perf_counter() - t0
    down, server_down = status("self", "VmHWM") - before, server_mem.rise()
    assert float(out[0]) == 0.5 and out.nbytes == mb * 1_000_000
    del out, result
    qflow.delete(dispatch_id)
    rounds.append({"upload_s": up_s, "download_s": down_s,
                   "client_upload": up / mb, "server_upload": server_up / mb,
                   "client_download": down / mb, "server_download": server_down / mb})
print(json.dumps(rounds))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1000, help="The array's size in MB.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/large_io.json")
    args = parser.parse_args()

    limit = str(args.mb * 1_000_000 + (64 << 20))
    with started_head(QFLOW_SERVER_MAX_BODY=limit) as head:
        server_pid = json.loads((head.home / "service.json").read_text())["server_pid"]
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, str(server_pid), str(args.mb), str(args.repeats)],
            env=head.remote,
            capture_output=True,
            text=True,
            timeout=3600,
        )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    rounds = json.loads(done.stdout.strip().splitlines()[-1])

    report: dict[str, dict[str, float]] = {}
    print(f"{args.mb} MB each way, {args.repeats} rounds")
    print(f"{'measure':<16} {'median':>8} {'min-max':>16}")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        report[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        unit = "s" if key.endswith("_s") else "copies"
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{key:<16} {statistics.median(values):>8.2f} {spread:>16} {unit}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"mb": args.mb, **report}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
