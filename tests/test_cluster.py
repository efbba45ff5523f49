"""Connecting to Ray."""

import os
import subprocess
import sys
import textwrap


def test_unreachable_address_is_clear(tmp_path):
    """A RAY_ADDRESS that does not answer gives a ClusterConnectionError with advice."""
    script = textwrap.dedent("""
        import qflow
        from qflow.exceptions import ClusterConnectionError
        @qflow.lattice
        def flow():
            return 1
        try:
            qflow.dispatch(flow)()
        except ClusterConnectionError as exc:
            print("ERR", exc)
    """)
    env = {**os.environ, "QFLOW_HOME": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("ERR")]
    assert line, out.stderr[-3000:]
    assert "No Ray cluster answers at '127.0.0.1:1'" in line[0]
    assert "qflow start" in line[0]
