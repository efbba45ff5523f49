"""Leptons: bash commands and C functions (a real shared library, compiled here) as
nodes of a lattice."""

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

import qflow as ct
from qflow.exceptions import QflowInputError

ROOT = Path(__file__).resolve().parents[1]

C_SOURCE = r"""
int add_into(int a, int b, int *out) { *out = a + b; return 0; }
void scale(double *values, int n, double k) { for (int i = 0; i < n; i++) values[i] *= k; }
int twice(int x) { return 2 * x; }
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """libdemo.so, built with gcc (installed by the project's script if missing)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensure_debian.py"), "gcc"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, f"gcc is needed to build the test library: {out.stderr}"
    folder = tmp_path_factory.mktemp("lib")
    (folder / "demo.c").write_text(C_SOURCE)
    subprocess.run(
        [
            out.stdout.strip(),
            "-shared",
            "-fPIC",
            "-o",
            str(folder / "libdemo.so"),
            str(folder / "demo.c"),
        ],
        check=True,
    )
    return str(folder / "libdemo.so")


def test_c_leptons_in_a_lattice(library):
    add_into = ct.Lepton(
        "C",
        library_name=library,
        function_name="add_into",
        argtypes=[
            (ctypes.c_int, ct.Lepton.INPUT),
            (ctypes.c_int, ct.Lepton.INPUT),
            (ctypes.POINTER(ctypes.c_int), ct.Lepton.OUTPUT),
        ],
    )
    twice = ct.Lepton(
        "C",
        library_name=library,
        function_name="twice",
        argtypes=[(ctypes.c_int, ct.Lepton.INPUT)],
        restype=ctypes.c_int,
        display_name="twice_in_c",
    )
    scale = ct.Lepton(
        "C",
        library_name=library,
        function_name="scale",
        argtypes=[
            (ctypes.c_double * 3, ct.Lepton.INPUT_OUTPUT),
            (ctypes.c_int, ct.Lepton.INPUT),
            (ctypes.c_double, ct.Lepton.INPUT),
        ],
    )

    @ct.electron
    def plus_one(x):
        return x + 1

    @ct.lattice
    def workflow(a, b):
        total = add_into(a, b)
        return twice(plus_one(total)), scale([1.0, 2.0, 3.0], 3, 0.5)

    res = ct.dispatch_sync(workflow)(2, 3)
    assert res.status == "COMPLETED", res.error
    assert res.result == (12, [0.5, 1.0, 1.5])
    assert res.get_node_result(0)["node_name"] == "add_into"
    assert "twice_in_c" in [n["node_name"] for n in res.get_all_node_results()]


def test_bash_leptons(tmp_path):
    echofile = tmp_path / "echo.txt"

    @ct.leptons.bash(display_name="writer", deps_bash=["true"])
    def write(x):
        return f"echo {x} > {echofile}; echo wrote {x}"

    @ct.leptons.bash(named_outputs=["A", "B"])
    def two_values(a):
        return f"A={a}; B=$(( {a} * 2 ))"

    hooked = ct.leptons.bash(
        lambda call_dep_hook=None: f"echo {call_dep_hook}",
        call_before=[ct.DepsCall(lambda: 123, retval_keyword="call_dep_hook")],
    )

    formatted = ct.Lepton("bash", command="printf '%s' {word}", display_name="fmt")

    @ct.lattice
    def workflow():
        return write(5), two_values(4), hooked(), formatted(word="hi")

    res = ct.dispatch_sync(workflow)()
    assert res.status == "COMPLETED", res.error
    assert res.result == (None, ("4", "8"), None, None)
    assert echofile.read_text() == "5\n"
    nodes = {n["node_name"]: n for n in res.get_all_node_results()}
    assert nodes["writer"]["stdout"] == "wrote 5\n"
    assert nodes["<lambda>"]["stdout"] == "123\n"  # qflow passes the hook's value
    assert nodes["fmt"]["stdout"] == "hi"


def test_a_failing_command_fails_the_node_with_its_stderr():
    @ct.leptons.bash
    def broken():
        return "echo oops >&2; exit 4"

    @ct.lattice
    def workflow():
        return broken()

    res = ct.dispatch_sync(workflow)()
    assert res.status == "FAILED" and "exited with 4" in res.error and "oops" in res.error


def test_bad_leptons_are_refused_at_once():
    with pytest.raises(QflowInputError, match="language is one of bash, c, python"):
        ct.Lepton("fortran")
    with pytest.raises(QflowInputError, match="needs library_name"):
        ct.Lepton("C", function_name="f")
    with pytest.raises(QflowInputError, match="argtypes are"):
        ct.Lepton("C", library_name="x.so", function_name="f", argtypes=[ctypes.c_int])


def test_a_bash_lepton_with_files_gets_them_before_its_command(tmp_path):
    """files= reaches only a function whose signature takes it: the command builder
    task(x) does not, so it is not passed (Covalent's how-to)."""
    src, dst = tmp_path / "in.txt", tmp_path / "moved" / "in.txt"
    src.write_text("hello from the file")

    def task(x):
        return f"cat {dst}; echo x={x}"

    lepton = ct.leptons.bash(task, files=[ct.fs.FileTransfer(str(src), str(dst))])

    @ct.lattice
    def flow(x):
        return lepton(x)

    res = ct.dispatch_sync(flow)(3)
    assert res.status == "COMPLETED", res.error
    node = next(n for n in res.get_all_node_results() if n["node_name"] == "task")
    assert node["stdout"] == "hello from the filex=3\n"
