"""The UI's JSON API, pages and event stream, over a store filled by real dispatches."""

import csv
import json
import time
import uuid

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import qflow
from qflow._api import _runtime
from qflow.cli import main
from qflow.ui.app import create_app
from qflow.ui.security import Guard
from tests.conftest import debian_program
from tests.ui.workflows import one_point

BASE = "http://127.0.0.1:8765"


@qflow.electron
def shout(x):
    print(f"shouting {x}")
    return {"x": x, "loud": str(x).upper()}


@qflow.electron
def boom(x):
    raise ValueError(f"no {x}")


@qflow.electron
def nap(seconds):
    time.sleep(seconds)
    return seconds


@qflow.lattice
def inner(x):
    return shout(x)


def _lattice(name, body):
    body.__name__ = body.__qualname__ = name
    return qflow.lattice(body)


@pytest.fixture(scope="module")
def tag():
    return "ui" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def dispatched(tag):
    ok = _lattice(f"{tag}_ok", lambda x: [shout(x), shout(x + 1)])
    bad = _lattice(f"{tag}_bad", lambda x: boom(x))
    nested = _lattice(f"{tag}_nested", lambda x: qflow.electron(inner)(x))
    ids = {
        "ok": qflow.dispatch(ok)(1),
        "bad": qflow.dispatch(bad)(2),
        "nested": qflow.dispatch(nested)(3),
    }
    for i in ids.values():
        qflow.get_result(i, wait=True)
    return ids


def _client(app, base_url=BASE):
    """A client that carries ``app``'s token, as a logged-in browser does."""
    return TestClient(
        app, base_url=base_url, headers={"Authorization": f"Bearer {app.guard.token}"}
    )


@pytest.fixture
def client():
    with _client(create_app(_runtime().store)) as c:
        yield c


def test_list_counts_search_sort_and_pages(client, dispatched, tag):
    page = client.get("/api/dispatches", params={"q": tag}).json()
    assert page["total"] == 3
    assert page["counts"] == {"COMPLETED": 2, "FAILED": 1}
    names = {r["name"] for r in page["rows"]}
    assert names == {f"{tag}_ok", f"{tag}_bad", f"{tag}_nested"}  # the sublattice is not listed
    ok = next(r for r in page["rows"] if r["name"] == f"{tag}_ok")
    assert (ok["nodes_done"], ok["nodes_total"]) == (3, 3)  # 2 electrons, the return value
    failed = client.get("/api/dispatches", params={"q": tag, "status": "FAILED"}).json()
    assert [r["name"] for r in failed["rows"]] == [f"{tag}_bad"]
    by_name = client.get(
        "/api/dispatches",
        params={"q": tag, "sort": "name", "order": "asc", "per_page": 1, "page": 2},
    ).json()
    assert [r["name"] for r in by_name["rows"]] == [f"{tag}_nested"]
    assert by_name["page"] == 2 and by_name["total"] == 3
    prefix = client.get("/api/dispatches", params={"q": dispatched["bad"][:13]}).json()
    assert [r["dispatch_id"] for r in prefix["rows"]] == [dispatched["bad"]]


def test_bad_list_parameters_say_what_is_valid(client):
    r = client.get("/api/dispatches", params={"sort": "colour"})
    assert r.status_code == 400 and "created_at" in r.json()["error"]
    assert client.get("/api/dispatches", params={"per_page": 10_000}).status_code == 400
    assert client.get("/api/dispatches", params={"page": "x"}).status_code == 400


def test_dispatch_json_nodes_layout_and_texts(client, dispatched):
    view = client.get(f"/api/dispatches/{dispatched['ok']}").json()
    assert view["status"] == "COMPLETED" and view["progress"] == {"done": 3, "total": 3}
    assert view["inputs_text"] == "{'args': (1,), 'kwargs': {}}"
    assert "'loud': '1'" in view["result_text"]
    assert "shout(x)" in view["source"]
    assert set(view["layout"]["nodes"]) == {
        str(n["node_id"]) for n in view["nodes"] if n["kind"] != "parameter"
    }
    node = client.get(f"/api/dispatches/{dispatched['ok']}/nodes/0").json()
    assert node["stdout"] == "shouting 1\n"
    assert node["inputs_text"] == "(1)" and node["executor"] == "ray"
    assert node["source"].startswith("@qflow.electron\ndef shout(x):")
    assert node["output_text"] == "{'loud': '1', 'x': 1}"
    assert node["start_time"].endswith("+00:00")  # stored in UTC, said so
    csv_text = client.get(f"/api/dispatches/{dispatched['ok']}?format=csv").text
    assert csv_text.splitlines()[0].startswith("node_id,name,kind,status")
    assert client.get("/api/dispatches/nope").status_code == 404
    assert client.get(f"/api/dispatches/{dispatched['ok']}/nodes/99").status_code == 404


def test_failed_node_keeps_its_full_traceback(client, dispatched):
    node = client.get(f"/api/dispatches/{dispatched['bad']}/nodes/0").json()
    assert node["status"] == "FAILED"
    assert "Traceback" in node["error"] and "ValueError: no 2" in node["error"]


def test_sublattice_drill_down_and_breadcrumbs(client, dispatched, tag):
    parent = client.get(f"/api/dispatches/{dispatched['nested']}").json()
    child_id = parent["nodes"][0]["sublattice_id"]
    assert [s["dispatch_id"] for s in parent["sublattices"]] == [child_id]
    child = client.get(f"/api/dispatches/{child_id}").json()
    assert [c["name"] for c in child["breadcrumbs"]] == [f"{tag}_nested", "inner"]
    assert child["nodes"][0]["output_text"] == "{'loud': '3', 'x': 3}"
    assert client.get(f"/dispatch/{child_id}").status_code == 200


def test_pages_render(client, dispatched, tag):
    index = client.get("/", params={"q": tag})
    assert index.status_code == 200 and f"{tag}_ok" in index.text
    page = client.get(f"/dispatch/{dispatched['ok']}")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text
    assert client.get("/static/dispatch.js").status_code == 200


def test_views_never_unpickle(client, dispatched, monkeypatch):
    import pickle

    import cloudpickle

    def refuse(*args, **kwargs):
        raise AssertionError("the UI unpickled stored data")

    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    for url in (
        "/api/dispatches",
        f"/api/dispatches/{dispatched['ok']}",
        f"/api/dispatches/{dispatched['ok']}/nodes/1",
        f"/dispatch/{dispatched['ok']}",
    ):
        assert client.get(url).status_code == 200, url


def test_event_stream_reports_a_change(client):
    with client.stream("GET", "/api/events") as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        for line in lines:
            if line.startswith("event:"):
                assert line == "event: change"
                data = json.loads(next(lines)[len("data: ") :])
                assert len(data["marker"]) == 2
                break


@pytest.mark.slow
def test_cancel_through_the_api(client, tag):
    slow = _lattice(f"{tag}_slow", lambda: nap(60))
    dispatch_id = qflow.dispatch(slow)()
    guard = client.app.guard
    r = client.post(
        f"/api/dispatches/{dispatch_id}/cancel",
        headers={"X-CSRF-Token": guard.csrf, "Origin": BASE},
    )
    assert r.status_code == 200, r.text
    assert qflow.get_result(dispatch_id, wait=True, timeout=60).status == "CANCELLED"


def test_cli_show_json_and_export(dispatched, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["show", dispatched["ok"], "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["progress"] == {"done": 3, "total": 3}
    target = tmp_path / "nodes.csv"
    out = runner.invoke(main, ["export", dispatched["ok"], "--format", "csv", "-o", str(target)])
    assert out.exit_code == 0, out.output
    with target.open(newline="") as f:
        assert len(list(csv.reader(f))) == 6  # the header and five nodes
    out = runner.invoke(main, ["export", "no-such-id"])
    assert out.exit_code == 1 and "No dispatch" in out.output


def test_security_guard():
    store = _runtime().store
    open_app = create_app(store, Guard.for_bind("0.0.0.0", 8765))
    guard = open_app.guard
    with TestClient(open_app, base_url="http://203.0.113.5:8765") as c:
        assert c.get("/api/dispatches").status_code == 401
        assert c.get("/api/dispatches", headers={"Authorization": "Bearer nope"}).status_code == 401
        r = c.get("/?token=wrong", follow_redirects=False)
        assert r.status_code == 401
        r = c.get(f"/?token={guard.token}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert c.get("/api/dispatches").status_code == 200  # the cookie now logs in
    with TestClient(open_app, base_url="http://203.0.113.5:8765") as c:
        ok = c.get("/api/dispatches", headers={"Authorization": f"Bearer {guard.token}"})
        assert ok.status_code == 200
    local = create_app(store)
    with _client(local, base_url="http://evil.example:8765") as c:
        assert c.get("/api/dispatches").status_code == 400  # DNS rebinding: wrong Host
    with _client(local) as c:
        url = "/api/dispatches/x/cancel"
        assert c.post(url).status_code == 403  # no CSRF token
        assert (
            c.post(
                url, headers={"X-CSRF-Token": local.guard.csrf, "Origin": "http://evil.example"}
            ).status_code
            == 403
        )
        assert c.post(url, headers={"X-CSRF-Token": "wrong"}).status_code == 403
        # Past the guard, an unknown id is the API's own 400.
        assert (
            c.post(url, headers={"X-CSRF-Token": local.guard.csrf, "Origin": BASE}).status_code
            == 400
        )


def test_loopback_needs_the_token_too_and_pages_keep_the_csrf_token_to_themselves():
    """Any local user can reach a loopback port; the store is its owner's alone."""
    local = create_app(_runtime().store)
    with TestClient(local, base_url=BASE) as c:
        for path in ("/", "/api/dispatches", "/api/events", "/dispatch/x"):
            r = c.get(path)
            assert r.status_code == 401 and local.guard.csrf not in r.text, path
            assert "?token=" in r.text  # says how to log in
        assert (
            c.post(
                "/api/delete", json={"ids": ["x"]}, headers={"X-CSRF-Token": local.guard.csrf}
            ).status_code
            == 401
        )
        r = c.get(f"/?token={local.guard.token}", follow_redirects=False)
        assert r.status_code == 303
        assert c.get("/").status_code == 200  # the cookie now logs in


def test_list_api_refuses_huge_pages_and_search_texts_with_400(client):
    for params in (
        {"page": str(10**30)},
        {"page": "0"},
        {"per_page": "100000"},
        {"q": "x" * 60_000},
    ):
        r = client.get("/api/dispatches", params=params)
        assert r.status_code == 400, (params, r.text)
        assert "aside" not in r.text and "qflow.db" not in r.text


def test_metrics_json_gathers_sublattices(client, tag):
    sweep = _lattice(f"{tag}_sweep", lambda xs: [qflow.electron(one_point)(x) for x in xs])
    dispatch_id = qflow.dispatch(sweep)([1.0, 1.5, 2.0])
    assert qflow.get_result(dispatch_id, wait=True).status == "COMPLETED"
    data = client.get(f"/api/dispatches/{dispatch_id}/metrics").json()
    points = data["metrics"]["energy"]
    assert sorted((p["step"], p["value"]) for p in points) == [
        (1.0, -0.75),
        (1.5, -1.0),
        (2.0, -0.75),
    ]
    assert {data["dispatch_names"][p["dispatch_id"]] for p in points} == {"one_point"}
    assert {p["error"] for p in points} == {0.01}
    assert data["meta"]["energy"] == {"unit": "Ha", "x": "R (Å)", "chart": "energy"}
    assert data["meta"]["exact energy"]["chart"] == "energy"
    assert client.get("/api/dispatches/nope/metrics").status_code == 404


def test_delete_and_redispatch_through_the_api(client, tag):
    flow = _lattice(f"{tag}_again", lambda x: shout(x))
    first = qflow.dispatch(flow)(9)
    qflow.get_result(first, wait=True)
    csrf = {"X-CSRF-Token": client.app.guard.csrf, "Origin": BASE}
    # With no `qflow start` head the UI refuses, rather than run the dispatch itself
    # (it would die with the UI). tests/test_service.py redispatches through a head.
    again = client.post(f"/api/dispatches/{first}/redispatch", json={"reuse": True}, headers=csrf)
    assert again.status_code == 409 and "qflow start" in again.json()["error"], again.text
    assert client.post("/api/delete", json={"ids": "x"}, headers=csrf).status_code == 400
    gone = client.post("/api/delete", json={"ids": [first]}, headers=csrf)
    assert gone.status_code == 200 and gone.json() == {"deleted": 1}
    assert client.get(f"/api/dispatches/{first}").status_code == 404


def test_state_json_is_the_compact_live_view(client, dispatched):
    state = client.get(f"/api/dispatches/{dispatched['ok']}/state").json()
    assert state["status"] == "COMPLETED" and state["progress"] == {"done": 3, "total": 3}
    assert state["columns"][:2] == ["node_id", "status"]
    # literal arguments (parameter nodes) never change: the live view leaves them out
    assert [row[:2] for row in state["nodes"]] == [
        [0, "COMPLETED"],
        [2, "COMPLETED"],
        [4, "COMPLETED"],
    ]
    assert client.get("/api/dispatches/nope/state").status_code == 404


def test_tags_are_recorded_and_searched(client, tag):
    tagged = qflow.lattice(tags=["h2", f"{tag}-sto3g"])(lambda: shout(0))
    tagged.__name__ = "tagged"
    dispatch_id = qflow.dispatch(tagged)()
    qflow.get_result(dispatch_id, wait=True)
    found = client.get("/api/dispatches", params={"q": f"{tag}-sto"}).json()
    assert [r["dispatch_id"] for r in found["rows"]] == [dispatch_id]
    assert json.loads(found["rows"][0]["tags"]) == ["h2", f"{tag}-sto3g"]
    assert client.get(f"/api/dispatches/{dispatch_id}").json()["tags"][0] == "h2"  # a list
    with pytest.raises(qflow.QflowError, match="non-empty strings"):
        qflow.lattice(tags=[""])(lambda: 1)
    with pytest.raises(qflow.QflowError, match="non-empty strings"):
        qflow.lattice(tags=5)(lambda: 1)


def test_connections_that_start_no_request_are_closed(monkeypatch):
    """Idle and half-open connections (a request head that never ends) do not pile up."""
    import socket
    import threading

    import uvicorn

    from qflow.ui import app as ui_app

    monkeypatch.setattr(ui_app, "REQUEST_HEAD_TIMEOUT_S", 1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(_runtime().store),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            http=ui_app.timed_protocol(),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for opening in (b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"):  # idle; half-open
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(opening)
                t0 = time.monotonic()
                assert conn.recv(100) == b""  # closed by the server
                assert time.monotonic() - t0 < 5
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_ui_on_a_unix_socket_in_a_private_folder(tmp_path):
    """`qflow ui --socket PATH`: served there, still behind the token; a socket in a
    folder others can open is refused."""
    import os
    import subprocess
    import sys

    program = debian_program("curl")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "QFLOW_HOME": str(home), "QFLOW_UI_TOKEN": "tok-123"}
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    refused = subprocess.run(
        [sys.executable, "-m", "qflow.cli", "ui", "--socket", str(open_folder / "ui.sock")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "only you" in refused.stderr, refused.stderr
    sock = home / "ui.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qflow.cli", "ui", "--socket", str(sock)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)

        def curl(*extra):
            return subprocess.run(
                [
                    program,
                    "-s",
                    "-w",
                    "\n%{http_code}",
                    "--unix-socket",
                    str(sock),
                    *extra,
                    "http://localhost/api/dispatches",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout

        assert curl().endswith("401")
        assert curl("-H", "Authorization: Bearer tok-123").endswith("200")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
