"""Ray ObjectRefs turned into futures, cheaply.

``ObjectRef.future()`` costs a callback from Ray's core worker per object, which on
a fan-out of small tasks made the dispatcher's process spend more time noticing
completions than bare Ray spends running them. Here one thread calls ``ray.wait``
over everything in flight and fetches what finished in one ``ray.get``; its wait
time grows with the number in flight, so each call costs a small fraction of the
time it covers however many tasks are running.

Each watched ref gets a :class:`Completion`, a future with the part of the
``concurrent.futures.Future`` API the dispatcher uses. A ``Future`` is several objects
the garbage collector tracks (its condition, lock, deque, bound methods), and a large
fan-out holds one per node: enough to set off costly full collections of the whole
process (``benchmarks/scale.py`` measures it).

Example:
    >>> import ray
    >>> from qflow.core.completions import watch
    >>> watch(ray.put(41), convert=str).result(timeout=30)
    '41'
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError
from typing import Any, cast

import ray

#: Seconds a ``ray.wait`` may block per ref in flight (about 100 times its own cost
#: per ref), within these bounds: a lone task is noticed as soon as it finishes, and a
#: ref watched while a wait is under way joins the watched set when that wait ends.
#: When all the watched refs are ready, the wait returns at once.
_WAIT_PER_REF_S = 50e-6
_WAIT_MIN_S, _WAIT_MAX_S = 0.01, 0.25


_PENDING, _DONE = 0, 1
#: Guards every Completion's state: held only to read or set a few fields, never while
#: waiting, so one lock for all of them costs less than one each.
_state_lock = threading.Lock()


class Completion:
    """The outcome of one watched ref: ``done``, ``result``, ``exception`` and
    ``add_done_callback`` as on a ``concurrent.futures.Future``, and set once.

    Callbacks run in the thread that sets it (or at once, if it is already set), like a
    ``Future``'s; one that raises does not stop the others.

    Example:
        >>> c = Completion()
        >>> c.add_done_callback(lambda done: print("got", done.result()))
        >>> c.set_result(42)
        got 42
        >>> c.result(timeout=1)
        42
    """

    __slots__ = ("_callbacks", "_convert", "_error", "_event", "_state", "_value")

    def __init__(self, convert: Callable[[Any], Any] | None = None) -> None:
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Completion], Any]] | None = None
        self._event: threading.Event | None = None  # made only for a blocking wait
        self._convert = convert

    def done(self) -> bool:
        return self._state == _DONE

    def cancelled(self) -> bool:
        return False  # Ray's cancel arrives as the task's error, not as a cancelled future

    def _wait(self, timeout: float | None) -> None:
        if self._state == _DONE:
            return
        with _state_lock:
            if self._state != _DONE and self._event is None:
                self._event = threading.Event()
            event = self._event
        if event is not None and not event.wait(timeout):
            raise TimeoutError(f"Not done within {timeout} s.")

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self._error

    def add_done_callback(self, fn: Callable[[Completion], Any]) -> None:
        with _state_lock:
            if self._state != _DONE:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        _call(fn, self)

    def set_result(self, value: Any) -> None:
        self._set(value, None)

    def set_exception(self, exc: BaseException) -> None:
        self._set(None, exc)

    def _set(self, value: Any, exc: BaseException | None) -> None:
        with _state_lock:
            if self._state == _DONE:
                raise RuntimeError("This completion is already set.")
            self._value, self._error, self._state = value, exc, _DONE
            callbacks, self._callbacks = self._callbacks, None
            event = self._event
        if event is not None:
            event.set()
        for fn in callbacks or ():
            _call(fn, self)


def _call(fn: Callable[[Completion], Any], completion: Completion) -> None:
    try:
        fn(completion)
    except Exception:  # as with a Future: one failing callback must not stop the rest
        logging.getLogger(__name__).exception("A completion callback failed.")


class _Stream:
    """A streaming task watched item by item: ``on_item(ref, None)`` for each item as it
    exists (an item holding the task's error included), ``on_item(None, None)`` at its
    end, ``on_item(None, exc)`` when Ray went away under it."""

    __slots__ = ("on_item",)

    def __init__(self, on_item: Callable[[Any, BaseException | None], Any]) -> None:
        self.on_item = on_item

    def tell(self, ref: Any, exc: BaseException | None) -> None:
        try:
            self.on_item(ref, exc)
        except Exception:  # a bug there must not stop the watcher
            logging.getLogger(__name__).exception("A stream callback failed.")


class _Watcher:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._new: list[tuple[Any, Completion | _Stream]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._leaving = False
        self._exit_hook = False

    def watch(self, ref: Any, convert: Callable[[Any], Any] | None) -> Completion:
        fut = Completion(convert)
        self.add(ref, fut)
        return fut

    def add(self, ref: Any, entry: Completion | _Stream) -> None:
        with self._lock:
            if self._closing:  # the process is exiting: no new thread may call Ray now
                _settle(entry, RuntimeError("The process is exiting; not watched."))
                return
            self._new.append((ref, entry))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="qflow-completions", daemon=True
                )
                self._thread.start()
                # Registered after ray.init registered its shutdown, so (atexit runs last
                # in, first out) this thread is out of ray.wait before Ray goes down:
                # Ray ends the whole process when a thread calls it after shutdown.
                if not self._exit_hook:
                    self._exit_hook = True
                    atexit.register(self.close)
                    _guard_shutdown()
            self._lock.notify()

    def close(self) -> None:
        """Stop watching for good (at exit): the thread leaves its current ``ray.wait``
        and ends, and later calls to :func:`watch` start none."""
        with self._lock:
            self._closing = True
            self._lock.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_WAIT_MAX_S + 2)

    def leave_ray(self) -> None:
        """Before ``ray.shutdown()``: fail everything watched ("Ray was shut down while
        these tasks ran") and let the thread end, so that it is not inside Ray when Ray
        goes down. A later :func:`watch` (after a new ``ray.init``) starts a new one."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                return
            self._leaving = True
            self._lock.notify()
        if thread is not threading.current_thread():
            thread.join(timeout=_WAIT_MAX_S + 2)
        with self._lock:
            self._leaving = False

    def _run(self) -> None:
        pending: dict[Any, Completion | _Stream] = {}
        while True:
            with self._lock:
                while not self._new and not pending and not self._closing and not self._leaving:
                    self._lock.wait()
                if self._closing:
                    return
                leaving = self._leaving
                new, self._new = self._new, []
            pending.update(new)
            if leaving or not ray.is_initialized():  # nothing pending will finish
                for fut in pending.values():
                    _settle(fut, _shut_down())
                if leaving:
                    return
                pending.clear()
                continue
            refs = list(pending)
            timeout = min(_WAIT_MAX_S, max(_WAIT_MIN_S, len(refs) * _WAIT_PER_REF_S))
            try:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout, fetch_local=True)
            except (Exception, SystemExit) as exc:  # Ray itself went away: nothing
                # pending will finish (ray.shutdown() raises SystemExit in a waiting thread)
                for fut in pending.values():
                    _settle(fut, _gone(exc))
                pending.clear()
                continue
            if ready:
                refs_ready: list[Any] = []
                for r in ready:
                    entry = pending[r]
                    if not isinstance(entry, _Stream):
                        refs_ready.append(r)
                    elif _drain(r, entry):
                        del pending[r]
                if refs_ready:
                    _deliver(refs_ready, [cast(Completion, pending.pop(r)) for r in refs_ready])


def _drain(gen: Any, stream: _Stream) -> bool:
    """Hand ``stream`` every item of ``gen`` that exists now; True at its end."""
    while True:
        try:
            ref = gen._next_sync(timeout_s=0)
        except StopIteration:
            stream.tell(None, None)
            return True
        except (Exception, SystemExit) as exc:  # Ray itself went away
            stream.tell(None, _gone(exc))
            return True
        if ref.is_nil():  # the next item is not there yet
            return False
        stream.tell(ref, None)


def _shut_down() -> RuntimeError:
    return RuntimeError("Ray was shut down while these tasks ran.")


def _gone(exc: BaseException) -> Exception:
    """What a waiter gets when Ray failed under the watcher: the error itself, or for
    the SystemExit that Ray's shutdown raises in a thread inside Ray, a plain one."""
    return exc if isinstance(exc, Exception) else _shut_down()


def _deliver(refs: list[Any], futures: list[Completion]) -> None:
    try:
        values = ray.get(refs)
    except SystemExit as exc:  # Ray is shutting down: none of these will be read
        for fut in futures:
            _settle(fut, _gone(exc))
        return
    except Exception:  # at least one failed: take them one by one to match each error
        for ref, fut in zip(refs, futures):
            try:
                value = ray.get(ref)
            except (Exception, SystemExit) as exc:
                _settle(fut, _gone(exc))
            else:
                _settle(fut, None, value)
        return
    for fut, value in zip(futures, values):
        _settle(fut, None, value)


def _settle(fut: Completion | _Stream, exc: BaseException | None, value: Any = None) -> None:
    if isinstance(fut, _Stream):  # only ever settled by failure (see _drain for the rest)
        fut.tell(None, exc)
        return
    if fut.done():
        return
    if exc is None and fut._convert is not None:
        try:
            value = fut._convert(value)
        except Exception as err:  # a bug here must reach the waiter, not kill this thread
            exc = err
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


_watcher = _Watcher()


def _guard_shutdown() -> None:
    """Make ``ray.shutdown()`` take the watcher out of Ray first.

    Ray ends the whole process ("The core worker has already been shutdown") when a
    thread calls it after shutdown, and the watcher may be just about to: a script that
    shuts Ray down while a dispatch still runs would die instead of seeing the dispatch
    fail. Ray has no hook before shutdown, so ``ray.shutdown`` is wrapped, once, when
    the watcher first starts (importing qflow changes nothing).
    """
    original = ray.shutdown
    if getattr(original, "_qflow_leaves_first", False):
        return

    @functools.wraps(original)
    def shutdown(*args: Any, **kwargs: Any) -> Any:
        _watcher.leave_ray()
        return original(*args, **kwargs)

    shutdown._qflow_leaves_first = True  # type: ignore[attr-defined]
    ray.shutdown = shutdown


def close() -> None:
    """Stop watching before Ray shuts down (qflow's exit hook calls this)."""
    _watcher.close()


def watch_stream(gen: Any, on_item: Callable[[Any, BaseException | None], Any]) -> None:
    """Follow the streaming task ``gen`` (a ``ray.ObjectRefGenerator``) item by item, in
    order: ``on_item(ref, None)`` as each item exists, in this process's object store
    (``ray.get(ref)`` raises the task's error if it failed), ``on_item(None, None)`` when
    it has ended, and ``on_item(None, exc)`` if Ray went away first. ``on_item`` runs in
    the watcher's thread: it must be quick, and may call :func:`watch_stream` again."""
    _watcher.add(gen, _Stream(on_item))


def watch(ref: Any, convert: Callable[[Any], Any] | None = None) -> Completion:
    """A future that takes ``ref``'s value (or its error) once the object exists,
    passed through ``convert`` if given."""
    return _watcher.watch(ref, convert)
