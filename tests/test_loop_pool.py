"""The warm loop-actor pool's bookkeeping, on the class itself (its actors are names
only here; stopping one that does not exist is a no-op)."""

import time

from qflow._loop_pool import LoopPool, bundle_key


def test_bundle_key_ignores_order_and_int_float():
    assert bundle_key({"CPU": 1, "qpu": 0.5}) == bundle_key({"qpu": 0.5, "CPU": 1.0})
    assert bundle_key({"CPU": 1}) != bundle_key({"CPU": 2})


def test_release_keeps_warm_then_reaps():
    pool = LoopPool()
    pool._busy["loop-a"] = ("k1", "actor-1")
    pool.release("loop-a", keep_s=0.3)
    assert pool.idle_names() == ["actor-1"]
    time.sleep(1.2)  # the reaper runs every 0.5 s
    assert pool.idle_names() == []


def test_release_with_no_keep_stops_at_once():
    pool = LoopPool()
    pool._busy["loop-a"] = ("k1", "actor-1")
    pool.release("loop-a", keep_s=0)
    assert pool.idle_names() == [] and "loop-a" not in pool._busy


def test_a_waiting_loop_takes_an_idle_actor_of_its_bundle():
    """A loop waiting for resources takes an actor of its own bundle as soon as one is
    idle, and frees the idle actors of other bundles (their CPUs may be what it waits
    for) instead of waiting out their keep_warm."""
    pool = LoopPool()
    pool._idle = {
        "mine": [("actor-1", time.monotonic() + 60)],
        "other": [("actor-2", time.monotonic() + 60)],
    }
    assert pool._yield("loop-b", "mine") == "actor-1"
    assert pool._busy["loop-b"] == ("mine", "actor-1")
    assert pool._yield("loop-c", "mine") is None
    assert pool.idle_names() == []  # actor-2 was stopped for the waiting loop


def test_holder_names_the_actor_serving_a_loop():
    pool = LoopPool()
    pool._busy["loop-a"] = ("k1", "actor-1")
    assert pool.holder("loop-a") == "actor-1" and pool.holder("loop-b") is None
    pool.release("loop-a", keep_s=0)
    assert pool.holder("loop-a") is None
