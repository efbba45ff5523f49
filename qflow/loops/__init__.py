"""Packed variational loops' machinery: warm Ray actors (``warm``), the registry that
keeps them between loops (``pool``) and a running loop's progress (``progress``). The
loop lattice itself is :mod:`qflow.variational`; :mod:`qflow.qelectron` shares the warm
actors.

May import: ``qflow.core``, ``qflow.runtime``, ``qflow.store``, ``qflow.executors``.
"""
