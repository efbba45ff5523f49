"""settle_heap: the objects alive at start-up leave the collector's scans, once."""

import subprocess
import sys

import qflow


def test_settle_heap_collects_then_freezes_once():
    # In a fresh interpreter: freezing is for the life of the process.
    code = (
        "import gc\n"
        "from qflow._heap import settle_heap\n"
        "class Cycle: pass\n"
        "a = Cycle(); a.me = a; del a\n"  # garbage: collected, not frozen
        "assert settle_heap() is True\n"
        "frozen = gc.get_freeze_count()\n"
        "assert frozen > 1000, frozen\n"
        "assert not any(type(o).__name__ == 'Cycle' for o in gc.get_objects())\n"
        "assert settle_heap() is False and gc.get_freeze_count() == frozen\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_dispatching_process_has_settled_its_heap(ray_session):
    import gc

    @qflow.electron
    def one():
        return 1

    @qflow.lattice
    def flow():
        return one()

    assert qflow.dispatch_sync(flow)().result == 1
    assert gc.get_freeze_count() > 0
