"""Reaching a qflow server over HTTP, as Covalent's SDK reaches its dispatcher: the
protocol both sides share (``protocol``: paths, the version handshake, errors), the
client (``client``) and a read-only results store that reads through it (``store``).

A client starts no Ray, joins none and reads no file of the server's.

May import: ``qflow.exceptions``, ``qflow.settings``, ``qflow.store.base``. Never Ray,
``qflow.runtime`` or ``qflow.core.dispatcher``.
"""
