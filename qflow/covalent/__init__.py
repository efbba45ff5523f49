"""Covalent's surface that the core does not need: ``config`` (``get_config``,
``sync``), ``transport`` (``transport_graph``), ``drawing`` (``lattice.draw()``),
``leptons``, ``triggers`` and ``waits``. (Covalent's own module paths,
``qflow.executor``, ``qflow._results_manager`` and ``qflow._file_transfer``, stay where
Covalent code imports them.)

May import: ``qflow.core`` and ``qflow.store``; never ``qflow.ui``.
"""
