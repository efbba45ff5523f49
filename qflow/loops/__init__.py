"""Packed variational loops' machinery: a loop's typed spec and state (``spec``), the
checks on its circuit (``checks``), optimizers (``optimizers``), the actor that runs
its chunks (``actor``) on the executor that sends them (``executor``), the chunk
workflow (``workflow``), its result (``result``), warm Ray actors (``warm``), the
registry that keeps them between loops (``pool``) and a running loop's progress
(``progress``). The public face is :mod:`qflow.variational`; :mod:`qflow.qelectron`
shares the warm actors.

May import: ``qflow.core``, ``qflow.runtime``, ``qflow.store``, ``qflow.executors``,
and the decorators ``qflow.electron`` and ``qflow.lattice``.
"""
