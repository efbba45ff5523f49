"""A canary secret, set, asked for, used, printed and raised, then looked for in every
byte qflow and Ray wrote and in every view: embedded, under ``qflow start``, and
through a qflow server.

Each run has a folder of its own holding its ``QFLOW_HOME`` and its ``RAY_TMPDIR``
(where Ray writes its session: logs, spilled objects, runtime_env files), so "every
byte written" is every file under that folder, but the keep itself
(``$QFLOW_HOME/secrets``).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests.server.test_remote import free_port

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: The dispatching script: it never sees the value, only asks for it by name.
SCRIPT = """
import json, os, sys
import qflow

@qflow.electron(secrets=["CANARY_KEY"])
def use(x):
    key = os.environ["CANARY_KEY"]
    if qflow.secret("CANARY_KEY") != key:
        raise SystemExit("qflow.secret and os.environ disagree")
    print("using", key)
    print("in two writes:", key[:5], end="")
    print(key[5:])
    sys.stderr.write(f"stderr has {key}\\n")
    return len(key) + x

@qflow.electron(secrets=["CANARY_KEY"])
def boom(*after):
    raise RuntimeError(f"the server refused key {os.environ['CANARY_KEY']}")

@qflow.electron
def nosy(x):
    try:
        qflow.secret("CANARY_KEY")
    except qflow.QflowError as exc:
        refused = "secrets=" in str(exc)
    return {"env": os.environ.get("CANARY_KEY"), "refused": refused}

@qflow.lattice
def flow(x):
    used, seen = use(x), nosy(x)
    return [used, seen, boom(used, seen)]  # boom runs last: the others finish first

dispatch_id = qflow.dispatch(flow)(1)
res = qflow.get_result(dispatch_id, wait=True)
views = [str(res), repr(res), str(res.error), res.graph_text]
views += [repr(node) for node in res.get_all_node_results()]
views += [repr(v) for v in res.get_all_node_outputs().values()]
out = {n["node_name"]: n["output"] for n in res.get_all_node_results()}
# A redispatch asks for the secret again by name: nothing of it was stored to reuse.
again = qflow.get_result(qflow.redispatch(dispatch_id)(), wait=True)
again_out = {n["node_name"]: n["output"] for n in again.get_all_node_results()}
views += [str(again), str(again.error)]
print(json.dumps({"id": dispatch_id, "status": str(res.status), "views": views,
                  "used": out["use"].get_deserialized(),
                  "used_again": again_out["use"].get_deserialized(),
                  "nosy": out["nosy"].get_deserialized()}))
"""


@pytest.fixture
def tmp_path():
    """A short folder: Ray's socket paths under it must stay within 107 bytes."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="qfc-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _canary() -> str:
    """A value that appears nowhere unless this test's secret leaked."""
    return "QFCANARY" + secrets.token_hex(12)


def _env(home: pathlib.Path, ray_tmp: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "QFLOW_"))}
    env.update(QFLOW_HOME=str(home), RAY_TMPDIR=str(ray_tmp), PYTHONPATH=str(ROOT), **extra)
    ray_tmp.mkdir(parents=True, exist_ok=True)
    return env


def _qflow(env: dict[str, str], *args: str, input: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "qflow.cli", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _dispatch(env: dict[str, str]) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def _leaks(canary: str, folders: list[pathlib.Path], keep: pathlib.Path) -> list[str]:
    """Every file under ``folders`` holding the canary's bytes, the keep apart."""
    needle = canary.encode()
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if keep in path.parents or path.is_symlink() or not path.is_file():
                continue
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:  # a socket or a file a process just removed
                continue
    return found


def _views(env: dict[str, str], dispatch_id: str) -> str:
    """What the CLI shows of the dispatch."""
    return "\n".join(
        _qflow(env, *args)
        for args in (
            ("list",),
            ("show", dispatch_id),
            ("show", dispatch_id, "--json"),
            ("logs", dispatch_id),
            ("export", dispatch_id),
            ("export", dispatch_id, "--format", "csv"),
        )
    )


def _ui_pages(url: str, token: str, dispatch_id: str) -> str:
    """The UI's pages and JSON for the dispatch and each of its nodes, as served."""
    import urllib.request

    def get(path: str) -> str:
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()

    texts = [get("/"), get(f"/dispatch/{dispatch_id}"), get("/api/dispatches")]
    texts.append(get(f"/api/dispatches/{dispatch_id}"))
    texts += [get(f"/api/dispatches/{dispatch_id}/nodes/{n}") for n in range(4)]
    return "\n".join(texts)


def _check_outcome(out: dict, canary: str) -> None:
    assert out["status"] == "FAILED"  # boom raised, as it should
    assert out["used"] == len(canary) + 1  # the electron that asked had the value
    assert out["used_again"] == len(canary) + 1  # and had it again when redispatched
    # An electron that did not ask sees nothing, and qflow.secret says what to add.
    assert out["nosy"] == {"env": None, "refused": True}
    text = json.dumps(out)
    assert canary not in text


def _check_written(canary: str, folders: list[pathlib.Path], keep: pathlib.Path) -> None:
    assert _leaks(canary, folders, keep) == []
    # The search reads what was written: the redacted line is in the store.
    assert _leaks("using [secret CANARY_KEY]", folders, keep) != []


def _check_redacted(env: dict[str, str], dispatch_id: str, canary: str) -> None:
    views = _views(env, dispatch_id)
    assert canary not in views
    # What the electrons printed and raised is there, with the value named, not shown.
    assert "using [secret CANARY_KEY]" in views
    assert "in two writes: [secret CANARY_KEY]" in views
    assert "stderr has [secret CANARY_KEY]" in views
    assert "the server refused key [secret CANARY_KEY]" in views


def test_canary_embedded(tmp_path):
    canary = _canary()
    home, ray_tmp = tmp_path / "home", tmp_path / "ray"
    env = _env(home, ray_tmp)
    said = _qflow(env, "secret", "set", "CANARY_KEY", input=canary + "\n")
    assert canary not in said
    listed = _qflow(env, "secret", "list")
    assert "CANARY_KEY" in listed and canary not in listed

    out, printed = _dispatch(env)
    assert canary not in printed
    _check_outcome(out, canary)
    _check_redacted(env, out["id"], canary)
    _check_written(canary, [home, ray_tmp], home / "secrets")
    keep = home / "secrets"
    assert oct(keep.stat().st_mode & 0o777) == "0o700"
    assert oct((keep / "CANARY_KEY").stat().st_mode & 0o777) == "0o600"


def test_canary_under_qflow_start_and_through_its_server(tmp_path):
    """One ``qflow start --listen`` head: a client sets the secret through the server,
    then a script on the head and the client each dispatch, and both are searched."""
    canary = _canary()
    home, ray_tmp = tmp_path / "server-home", tmp_path / "ray"
    server_env = _env(home, ray_tmp)
    port = free_port()
    _qflow(server_env, "start", "--num-cpus", "2", "--listen", f"127.0.0.1:{port}")
    try:
        token = _qflow(server_env, "token").strip()
        client_home = tmp_path / "client-home"
        client_env = _env(
            client_home,
            tmp_path / "client-ray",
            QFLOW_SERVER=f"http://127.0.0.1:{port}",
            QFLOW_TOKEN=token,
        )
        said = _qflow(client_env, "secret", "set", "CANARY_KEY", input=canary)
        assert f"set on http://127.0.0.1:{port}" in said and canary not in said
        assert (home / "secrets" / "CANARY_KEY").exists()  # kept by the server
        assert not (client_home / "secrets").exists()
        # On the head: the script's dispatch runs in the `qflow start` service.
        on_head, printed = _dispatch(server_env)
        assert canary not in printed
        _check_outcome(on_head, canary)
        _check_redacted(server_env, on_head["id"], canary)
        # Through the server, from a client with a home of its own.
        out, printed = _dispatch(client_env)
        assert canary not in printed
        _check_outcome(out, canary)
        _check_redacted(client_env, out["id"], canary)
        listed = _qflow(client_env, "secret", "list")
        assert "CANARY_KEY" in listed and canary not in listed
        pages = _ui_pages(f"http://127.0.0.1:{port}", token, out["id"])
        assert canary not in pages and "[secret CANARY_KEY]" in pages
    finally:
        _qflow(server_env, "stop")
    _check_written(canary, [home, ray_tmp, client_home], home / "secrets")
