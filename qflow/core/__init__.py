"""The dispatch core: a lattice's graph, its plan, and the dispatcher that runs it.

Building a graph (``graph``) is separate from running it: ``plan`` compiles it without
Ray or a store, ``dispatcher`` runs the plan on the executors and ``recorder`` writes
what happens; ``task`` is what runs where a node runs (the worker side), with
``context``, ``node_progress`` and ``metrics``. The electron options it carries
(``options``, ``deps``, ``fs``) live here too.

May import: ``qflow.exceptions``, ``qflow.settings``, ``qflow.store``, ``qflow.executors``
(the dispatcher submits to them). Never ``qflow.runtime``, ``qflow.loops``,
``qflow.covalent`` or ``qflow.ui``.
"""
