"""The workloads both overhead.py and scale.py time: trivial electrons, and bare Ray
doing the same tasks."""

from __future__ import annotations

import sys

import cloudpickle
import numpy as np
import ray
import ray.cloudpickle

import qflow

# Workers do not have benchmarks/ on their path: ship this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@ray.remote
def _bare_inc(x: int) -> int:
    return x + 1


@ray.remote
def _bare_sum(*xs: int) -> int:
    return sum(xs)


@ray.remote
def _bare_big(i: int, mib: int) -> np.ndarray:
    return np.full(mib * 2**20 // 8, float(i))


@ray.remote
def _bare_checksum(*arrays: np.ndarray) -> float:
    return float(sum(a[0] for a in arrays))


@qflow.electron
def big(i: int, mib: int) -> np.ndarray:
    return np.full(mib * 2**20 // 8, float(i))


@qflow.electron
def checksum(arrays: list[np.ndarray]) -> float:
    return float(sum(a[0] for a in arrays))


@qflow.lattice
def big_outputs(n: int, mib: int = 50) -> float:
    return checksum([big(i, mib) for i in range(n)])


def bare_big_outputs(n: int, mib: int = 50) -> float:
    return ray.get(_bare_checksum.remote(*[_bare_big.remote(i, mib) for i in range(n)]))


@qflow.electron
def inc(x: int) -> int:
    return x + 1


@qflow.electron
def total(xs: list[int]) -> int:
    return sum(xs)


@qflow.lattice
def fanout(n: int) -> int:
    return total([inc(i) for i in range(n)])


@qflow.lattice
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@qflow.lattice
def summed(n: int) -> int:
    return sum(inc(i) for i in range(n))


@qflow.electron
def nap20(x: int) -> int:
    import time

    time.sleep(0.02)
    return x


@qflow.lattice
def naps20(n: int) -> int:
    return total([nap20(i) for i in range(n)])


@qflow.lattice
def single(x: int) -> int:
    return inc(x)


def bare_fanout(n: int) -> int:
    return ray.get(_bare_sum.remote(*[_bare_inc.remote(i) for i in range(n)]))


def bare_chain(n: int) -> int:
    ref = _bare_inc.remote(0)
    for _ in range(n - 1):
        ref = _bare_inc.remote(ref)
    return ray.get(ref)


def bare_summed(n: int) -> int:
    return sum(ray.get([_bare_inc.remote(i) for i in range(n)]))


def bare_single(x: int) -> int:
    return ray.get(_bare_inc.remote(x))
