"""One ray.wait thread turns ObjectRefs into futures: values, errors, many at once."""

import threading
import time

import pytest
import ray

from qflow._completions import watch
from qflow.core.completions import watch_stream


@ray.remote
def _after(seconds, value):
    time.sleep(seconds)
    return value


@ray.remote
def _fail():
    raise ValueError("boom")


def test_values_arrive_in_any_order():
    futures = [watch(_after.remote(0.3 - 0.1 * i, i)) for i in range(3)]
    assert [f.result(timeout=30) for f in futures] == [0, 1, 2]


def test_a_failure_reaches_only_its_own_future():
    ok, bad = watch(_after.remote(0, "ok")), watch(_fail.remote())
    assert ok.result(timeout=30) == "ok"
    with pytest.raises(ray.exceptions.RayTaskError, match="boom"):
        bad.result(timeout=30)


def test_a_failing_convert_is_the_futures_error_and_the_watcher_goes_on():
    def convert(value):
        raise RuntimeError(f"cannot convert {value}")

    with pytest.raises(RuntimeError, match="cannot convert 1"):
        watch(ray.put(1), convert).result(timeout=30)
    assert watch(ray.put(2)).result(timeout=30) == 2


def test_a_thousand_in_flight():
    refs = [_after.remote(0, i) for i in range(1000)]
    futures = [watch(r) for r in refs]
    assert sum(f.result(timeout=60) for f in futures) == sum(range(1000))


@ray.remote(num_returns="streaming", max_retries=0)
def _stream(n, then):
    import os

    for i in range(n):
        time.sleep(0.05)
        yield i
    if then == "raise":
        raise ValueError("stream broke")
    if then == "die":
        os._exit(1)


def _follow(gen):
    """Everything ``watch_stream`` reports of ``gen``: its values, then how it ended."""
    seen, ended = [], threading.Event()

    def on_item(ref, exc):
        if ref is None:
            seen.append(("end", exc))
            ended.set()
            return
        try:
            seen.append(ray.get(ref))
        except Exception as err:
            seen.append(("error", type(err)))

    watch_stream(gen, on_item)
    assert ended.wait(60), seen
    return seen


def test_a_stream_is_followed_item_by_item_to_its_end():
    assert _follow(_stream.remote(3, "")) == [0, 1, 2, ("end", None)]


def test_a_stream_that_fails_reports_its_error_then_ends():
    seen = _follow(_stream.remote(2, "raise"))
    assert seen[:2] == [0, 1] and seen[-1] == ("end", None)
    assert seen[2][0] == "error" and issubclass(seen[2][1], ray.exceptions.RayTaskError)
    died = _follow(_stream.remote(2, "die"))
    assert died[:2] == [0, 1] and died[2] == ("error", ray.exceptions.WorkerCrashedError)


def test_a_cancelled_task_raises_cancelled():
    ref = _after.remote(30, None)
    fut = watch(ref)
    time.sleep(0.5)
    ray.cancel(ref, force=True)
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        fut.result(timeout=30)


class TestCompletion:
    """The light future each watched ref gets; no Ray needed."""

    def test_callbacks_run_once_set_and_at_once_after(self):
        from qflow._completions import Completion

        seen = []
        c = Completion()
        c.add_done_callback(lambda done: seen.append(("early", done.result())))
        assert not c.done()
        c.set_result(7)
        c.add_done_callback(lambda done: seen.append(("late", done.result())))
        assert c.done() and seen == [("early", 7), ("late", 7)]
        assert c.exception() is None

    def test_an_error_is_raised_by_result_and_returned_by_exception(self):
        from qflow._completions import Completion

        c = Completion()
        c.set_exception(ValueError("boom"))
        assert isinstance(c.exception(), ValueError)
        with pytest.raises(ValueError, match="boom"):
            c.result()

    def test_a_blocking_wait_times_out_then_wakes(self):
        import threading
        from concurrent.futures import TimeoutError

        from qflow._completions import Completion

        c = Completion()
        with pytest.raises(TimeoutError):
            c.result(timeout=0.05)
        threading.Timer(0.05, c.set_result, ("late",)).start()
        assert c.result(timeout=30) == "late"

    def test_it_is_set_only_once(self):
        from qflow._completions import Completion

        c = Completion()
        c.set_result(1)
        with pytest.raises(RuntimeError, match="already set"):
            c.set_exception(ValueError())
        assert c.result() == 1

    def test_a_failing_callback_does_not_stop_the_others(self, caplog):
        from qflow._completions import Completion

        seen = []
        c = Completion()
        c.add_done_callback(lambda done: 1 / 0)
        c.add_done_callback(lambda done: seen.append(done.result()))
        c.set_result("ok")
        assert seen == ["ok"]
        assert "callback failed" in caplog.text


def test_ray_going_down_inside_wait_fails_the_watched_futures(monkeypatch):
    """Ray's shutdown raises SystemExit in a thread that is inside ray.wait: the watched
    futures get an error, and the watcher thread lives on (Ray itself is faked here:
    shutting down the session's Ray would end every later test)."""
    from qflow import _completions

    class ShuttingDown:
        @staticmethod
        def is_initialized():
            return True

        @staticmethod
        def wait(*args, **kwargs):
            raise SystemExit(0)

    monkeypatch.setattr(_completions, "ray", ShuttingDown)
    fut = watch(object())
    err = fut.exception(timeout=10)
    assert isinstance(err, RuntimeError) and "shut down" in str(err)
    monkeypatch.undo()
    assert ray.get(ray.put(1)) == 1
    assert watch(ray.put(2)).result(timeout=10) == 2  # the same thread, still watching


@pytest.mark.slow
def test_ray_shutdown_while_tasks_are_watched_fails_them_and_the_process_lives(tmp_path):
    """Ray ends the process when a thread calls it after shutdown; ray.shutdown() takes
    the watcher out of Ray first, and what it watched fails with a reason."""
    import subprocess
    import sys

    code = (
        "import time, ray\n"
        "from qflow._completions import watch\n"
        "ray.init(address='local', num_cpus=2, include_dashboard=False, logging_level='ERROR')\n"
        "@ray.remote\n"
        "def quick(i):\n"
        "    time.sleep(0.001 * (i % 7))\n"
        "    return i\n"
        "futs = [watch(quick.remote(i)) for i in range(3000)]\n"
        "time.sleep(1.1)\n"
        "ray.shutdown()\n"
        "errors = [f.exception(timeout=30) for f in futs]\n"
        "failed = [e for e in errors if e is not None]\n"
        "assert failed and all('shut down' in str(e) for e in failed), failed[:3]\n"
        "print('SURVIVED', len(failed))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert run.returncode == 0 and "SURVIVED" in run.stdout, run.stderr[-3000:]
