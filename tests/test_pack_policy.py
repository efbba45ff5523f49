"""The packing policy alone (no Ray): when calls are held, timed and packed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qflow.core.graph import NodeKind
from qflow.core.options import ElectronOptions
from qflow.core.packing import PROBES, PackPolicy, by_default, pack_size_for


def _call(template, **options):
    return SimpleNamespace(
        kind=NodeKind.ELECTRON, template=template, options=ElectronOptions(**options)
    )


def _outcome(seconds):
    return SimpleNamespace(
        start_time="2026-01-01T00:00:00+00:00",
        end_time=f"2026-01-01T00:00:{seconds:09.6f}+00:00",
    )


def test_first_calls_run_alone_then_the_rest_wait_for_their_timing():
    policy, template = PackPolicy(2), object()
    call = _call(template)
    assert [policy.size(call, lambda: 100) for _ in range(PROBES)] == [1] * PROBES
    assert policy.size(call, lambda: 100) is None and policy.waiting(call)
    assert policy.learn(call, _outcome(0.0005), 16) is True  # the first timing
    assert policy.learn(call, _outcome(0.002), 16) is False
    assert policy.size(call, lambda: 10_000) == 100  # 50 ms of 0.5 ms calls
    assert policy.size(call, lambda: 40) == 10  # two packs per CPU


def test_long_calls_big_outputs_and_other_executors_are_not_packed():
    policy = PackPolicy(2)
    slow, big = _call(object()), _call(object())
    for call, seconds, size in ((slow, 0.05, 16), (big, 0.0005, None)):
        for _ in range(PROBES):
            policy.size(call, lambda: 100)
        policy.learn(call, _outcome(seconds), size)
        assert policy.size(call, lambda: 100) == 1
    for options in ({"num_gpus": 1}, {"resources": {"qpu": 1}}, {"executor": "local"}):
        assert policy.size(_call(object(), **options), lambda: 100) == 1
    sub = SimpleNamespace(kind=NodeKind.SUBLATTICE, template=object(), options=ElectronOptions())
    assert policy.size(sub, lambda: 100) == 1


def test_pack_n_and_pack_false_and_the_switch(monkeypatch):
    policy = PackPolicy(2)
    assert policy.size(_call(object(), pack=7), lambda: 100) == 7
    assert policy.size(_call(object(), pack=False), lambda: 100) == 1
    off = PackPolicy(2, probes=False)
    assert off.size(_call(object()), lambda: 100) == 1
    assert off.size(_call(object(), pack=7), lambda: 100) == 7
    monkeypatch.setenv("QFLOW_PACKING", "off")
    assert by_default() is False
    monkeypatch.setenv("QFLOW_PACKING", "on")
    assert by_default() is True


@pytest.mark.parametrize(
    ("mean", "alike", "cpus", "size"), [(0.0005, 10_000, 2, 100), (0.02, 9, 2, 2)]
)
def test_pack_sizes(mean, alike, cpus, size):
    assert pack_size_for(mean, alike, cpus) == size
