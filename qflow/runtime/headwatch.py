"""Noticing that the Ray head this process is connected to has stopped answering.

When a driver loses its head (the GCS), Ray ends the driver about a minute later
("Failed to connect to GCS within 60 seconds ... The program will terminate"), with no
word to qflow. A :class:`HeadWatch` notices sooner: a thread opens a TCP connection to the
GCS every couple of seconds, and after ``gone_after_s`` seconds of refusals it calls
``on_gone`` once. That leaves the caller time to record why its dispatches ended.

Example:
    >>> gone = []
    >>> watch = HeadWatch("127.0.0.1:1", gone.append, every_s=0.05, gone_after_s=0.2)
    >>> watch.start()
    >>> watch.join(timeout=10)
    >>> gone
    ['127.0.0.1:1']
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

#: Seconds between connection attempts, and of refusals before the head counts as gone:
#: well inside the minute after which Ray ends the process, and well above a head's
#: restart of a listening socket (which never refuses while its process lives).
EVERY_S, GONE_AFTER_S = 2.0, 10.0


class HeadWatch:
    """Calls ``on_gone(address)`` once, from its own thread, when the GCS at
    ``address`` (``host:port``) has refused connections for ``gone_after_s`` seconds.

    ``still_current`` is asked first: a process that shut Ray down or moved to another
    cluster in the meantime is not told about the old head.
    """

    def __init__(
        self,
        address: str,
        on_gone: Callable[[str], None],
        *,
        every_s: float = EVERY_S,
        gone_after_s: float = GONE_AFTER_S,
        still_current: Callable[[], bool] = lambda: True,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.address, self._where = address, (host.strip("[]"), int(port))
        self.on_gone, self.still_current = on_gone, still_current
        self.every_s, self.gone_after_s = every_s, gone_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qflow-headwatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def watching(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _answers(self) -> bool:
        try:
            socket.create_connection(self._where, timeout=min(1.0, self.every_s)).close()
            return True
        except OSError:
            return False

    def _run(self) -> None:
        last_answer = time.monotonic()
        while not self._stop.wait(self.every_s):
            if self._answers():
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer >= self.gone_after_s:
                if self.still_current():
                    self.on_gone(self.address)
                return
