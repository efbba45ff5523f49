"""Where dispatches run: joining Ray (``ray_cluster``), the ``qflow start`` head and
its dispatcher service (``service``, ``head_state``), who owns a dispatch (``lease``),
noticing a lost head (``headwatch``), the heap (``heap``) and Ray on Slurm
(``slurm_cluster``).

May import: ``qflow.core``, ``qflow.store``, ``qflow.executors``, ``qflow.settings``,
``qflow.exceptions``. Never ``qflow.loops``, ``qflow.covalent`` or ``qflow.ui``.
"""
