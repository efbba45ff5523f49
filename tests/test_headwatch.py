"""The head watch on its own: plain sockets, no Ray."""

from __future__ import annotations

import socket
import time

from qflow._headwatch import HeadWatch


def _refused_address() -> str:
    """An address nothing listens on (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_head_that_refuses_is_reported_once():
    gone: list[str] = []
    address = _refused_address()
    watch = HeadWatch(address, gone.append, every_s=0.02, gone_after_s=0.1)
    watch.start()
    watch.join(timeout=10)
    assert gone == [address] and not watch.watching


def test_a_head_that_answers_is_not_reported_until_it_stops():
    gone: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    watch = HeadWatch(address, gone.append, every_s=0.02, gone_after_s=0.1)
    watch.start()
    time.sleep(0.5)  # 25 attempts, every one answered
    assert gone == [] and watch.watching
    listener.close()
    watch.join(timeout=10)
    assert gone == [address]


def test_a_process_that_left_that_head_is_not_told():
    gone: list[str] = []
    watch = HeadWatch(
        _refused_address(), gone.append, every_s=0.02, gone_after_s=0.1, still_current=lambda: False
    )
    watch.start()
    watch.join(timeout=10)
    assert gone == [] and not watch.watching


def test_a_stopped_watch_reports_nothing():
    gone: list[str] = []
    watch = HeadWatch(_refused_address(), gone.append, every_s=0.05, gone_after_s=0.3)
    watch.start()
    watch.stop()
    watch.join(timeout=10)
    assert gone == [] and not watch.watching
