"""Old module paths, kept importable: stored dispatches hold pickles that name them.

Until this layout (December 2026) qflow's modules stood side by side in ``qflow/``.
A results store written then holds graphs, options and outputs pickled by reference to
those paths (``qflow._graph.Graph``, ``qflow.fs.FileTransfer``, ...), which
``redispatch``, the service's resume and ``get_result`` unpickle. Each old path
resolves, on first import, to the very module object it moved to, so those pickles
load and code that imported the old paths keeps working. Keep this while stores from
before the move may be read: drop it with a store migration that rewrites old pickles.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

#: Old module path -> where it lives now.
MOVED: dict[str, str] = {
    "qflow._graph": "qflow.core.graph",
    "qflow._plan": "qflow.core.plan",
    "qflow._dispatcher": "qflow.core.dispatcher",
    "qflow._recorder": "qflow.core.recorder",
    "qflow._task": "qflow.core.task",
    "qflow._completions": "qflow.core.completions",
    "qflow._sublattice": "qflow.core.sublattice",
    "qflow._options": "qflow.core.options",
    "qflow._status": "qflow.core.status",
    "qflow._text": "qflow.core.text",
    "qflow._traceback": "qflow.core.tracebacks",
    "qflow._context": "qflow.core.context",
    "qflow._progress": "qflow.core.node_progress",
    "qflow._wait": "qflow.core.polling",
    "qflow.metrics": "qflow.core.metrics",
    "qflow.deps": "qflow.core.deps",
    "qflow.fs": "qflow.core.fs",
    "qflow.fs_strategies": "qflow.core.fs_strategies",
    "qflow.ui.layout": "qflow.core.layout",
    "qflow._cluster": "qflow.runtime.ray_cluster",
    "qflow._lease": "qflow.runtime.lease",
    "qflow._headwatch": "qflow.runtime.headwatch",
    "qflow._heap": "qflow.runtime.heap",
    "qflow._head_state": "qflow.runtime.head_state",
    "qflow.service": "qflow.runtime.service",
    "qflow.slurm_cluster": "qflow.runtime.slurm_cluster",
    "qflow._loop_pool": "qflow.loops.pool",
    "qflow._warm": "qflow.loops.warm",
    "qflow.loop_progress": "qflow.loops.progress",
    "qflow.compat": "qflow.covalent.config",
    "qflow.transport": "qflow.covalent.transport",
    "qflow.drawing": "qflow.covalent.drawing",
    "qflow.leptons": "qflow.covalent.leptons",
    "qflow.triggers": "qflow.covalent.triggers",
    "qflow.waits": "qflow.covalent.waits",
    "qflow.executors.loop": "qflow.loops.executor",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and hands back the module it moved to, unchanged."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        # The import system sets the alias's spec on the module it gets: keep the real
        # one, restored in exec_module.
        spec.loader_state = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        state = module.__spec__.loader_state if module.__spec__ else None
        if state is not None:
            module.__spec__, module.__loader__ = state


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


install()
