"""Ray ObjectRefs turned into ``concurrent.futures.Future`` objects, cheaply.

``ObjectRef.future()`` costs a callback from Ray's core worker per object, which on
a fan-out of small tasks made the dispatcher's process spend more time noticing
completions than bare Ray spends running them. Here one thread calls ``ray.wait``
over everything in flight and fetches what finished in one ``ray.get``; its wait
time grows with the number in flight, so each call costs a small fraction of the
time it covers however many tasks are running.

Example:
    >>> import ray
    >>> from qflow._completions import watch
    >>> watch(ray.put(41), convert=str).result(timeout=30)
    '41'
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import ray

#: Seconds a ``ray.wait`` may block per ref in flight (about 40 times its own cost
#: per ref), within these bounds: a lone task is noticed as soon as it finishes, and a
#: new one joins the watched set within the lower bound.
_WAIT_PER_REF_S = 20e-6
_WAIT_MIN_S, _WAIT_MAX_S = 0.01, 0.25


class _Watcher:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._new: list[tuple[Any, Future, Callable[[Any], Any] | None]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._exit_hook = False

    def watch(self, ref: Any, convert: Callable[[Any], Any] | None) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._closing:  # the process is exiting: no new thread may call Ray now
                fut.set_exception(RuntimeError("The process is exiting; not watched."))
                return fut
            self._new.append((ref, fut, convert))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="qflow-completions",
                                                daemon=True)
                self._thread.start()
                # Registered after ray.init registered its shutdown, so (atexit runs last
                # in, first out) this thread is out of ray.wait before Ray goes down:
                # Ray ends the whole process when a thread calls it after shutdown.
                if not self._exit_hook:
                    self._exit_hook = True
                    atexit.register(self.close)
            self._lock.notify()
        return fut

    def close(self) -> None:
        """Stop watching for good (at exit): the thread leaves its current ``ray.wait``
        and ends, and later calls to :func:`watch` start none."""
        with self._lock:
            self._closing = True
            self._lock.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_WAIT_MAX_S + 2)

    def _run(self) -> None:
        pending: dict[Any, tuple[Future, Callable[[Any], Any] | None]] = {}
        while True:
            with self._lock:
                while not self._new and not pending and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                new, self._new = self._new, []
            pending.update((ref, (fut, convert)) for ref, fut, convert in new)
            if not ray.is_initialized():  # shut down under us: nothing pending will finish
                gone = RuntimeError("Ray was shut down while these tasks ran.")
                for fut, _ in pending.values():
                    _settle(fut, gone)
                pending.clear()
                continue
            refs = list(pending)
            timeout = min(_WAIT_MAX_S, max(_WAIT_MIN_S, len(refs) * _WAIT_PER_REF_S))
            try:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout,
                                    fetch_local=True)
            except Exception as exc:  # Ray itself went away: nothing pending will finish
                for fut, _ in pending.values():
                    _settle(fut, exc)
                pending.clear()
                continue
            if ready:
                _deliver(ready, [pending.pop(r) for r in ready])


def _deliver(refs: list[Any], futures: list[tuple[Future, Callable[[Any], Any] | None]]) -> None:
    try:
        values = ray.get(refs)
    except Exception:  # at least one failed: take them one by one to match each error
        for ref, (fut, convert) in zip(refs, futures):
            try:
                value = ray.get(ref)
            except Exception as exc:
                _settle(fut, exc)
            else:
                _settle(fut, None, value, convert)
        return
    for (fut, convert), value in zip(futures, values):
        _settle(fut, None, value, convert)


def _settle(fut: Future, exc: BaseException | None, value: Any = None,
            convert: Callable[[Any], Any] | None = None) -> None:
    if fut.done():
        return
    if exc is None and convert is not None:
        try:
            value = convert(value)
        except Exception as err:  # a bug here must reach the waiter, not kill this thread
            exc = err
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


_watcher = _Watcher()


def close() -> None:
    """Stop watching before Ray shuts down (qflow's exit hook calls this)."""
    _watcher.close()


def watch(ref: Any, convert: Callable[[Any], Any] | None = None) -> Future:
    """A future that takes ``ref``'s value (or its error) once the object exists,
    passed through ``convert`` if given."""
    return _watcher.watch(ref, convert)
