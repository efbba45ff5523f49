"""The server's API guard and the client's protocol, without Ray or a process."""

from __future__ import annotations

import json
import pickle
import sys
import types

import pytest
from starlette.testclient import TestClient

from qflow.exceptions import (
    DispatchNotFoundError,
    QflowInputError,
    ServerAuthError,
    ServerError,
    VersionMismatchError,
)
from qflow.remote import protocol
from qflow.remote.client import client_for, login, server_url
from qflow.server.api import api_app
from qflow.store.sqlite import SQLiteStore

TOKEN = "s3cret-token"


class _Bomb:
    """Unpickling it writes a file: proof that the server unpickled the body."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def api():
    return TestClient(api_app(SQLiteStore(":memory:"), TOKEN, max_body=1000))


def _headers(token=TOKEN, versions=None):
    return {
        "Authorization": f"Bearer {token}",
        protocol.VERSION_HEADER: json.dumps(versions or protocol.local_versions()),
    }


def test_nothing_is_unpickled_before_the_token_is_checked(api, tmp_path):
    marker = tmp_path / "unpickled"
    body = pickle.dumps({"lattice": _Bomb(marker)})
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = api.post("/dispatches", content=body, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["type"] == "ServerAuthError"
    assert not marker.exists()


def test_a_client_of_other_versions_is_refused_before_its_body_is_read(api, tmp_path):
    marker = tmp_path / "unpickled"
    other = {**protocol.local_versions(), "python": "3.99"}
    answer = api.post(
        "/dispatches", content=pickle.dumps(_Bomb(marker)), headers=_headers(versions=other)
    )
    assert answer.status_code == 409
    assert "python: client 3.99, server" in answer.json()["error"]
    assert not marker.exists()


def test_a_body_over_the_limit_is_refused_by_its_length(api):
    answer = api.post("/dispatches", content=b"x" * 2000, headers=_headers())
    assert answer.status_code == 413 and "at most 1,000" in answer.json()["error"]


def test_a_module_the_server_lacks_is_named_with_how_to_provide_it(api):
    # A pickle naming a module that exists on the client only.
    module = types.ModuleType("missing_mod_x")
    exec("def f():\n    return 1", module.__dict__)
    module.f.__module__ = "missing_mod_x"
    sys.modules["missing_mod_x"] = module
    try:
        body = pickle.dumps({"lattice": module.f})
    finally:
        del sys.modules["missing_mod_x"]
    answer = api.post("/dispatches", content=body, headers=_headers())
    assert answer.status_code == 400
    text = answer.json()["error"]
    assert "'missing_mod_x'" in text and "register_pickle_by_value" in text


def test_only_store_reads_are_served(api):
    answer = api.post("/store/delete_dispatches", json={"args": [["x"]]}, headers=_headers())
    assert answer.status_code == 400 and "not a store read" in answer.json()["error"]
    answer = api.post("/store/get_status", json={"args": ["nope"]}, headers=_headers())
    assert answer.status_code == 200 and pickle.loads(answer.content) is None


def test_errors_cross_the_wire_as_qflow_errors_of_their_class():
    error = protocol.error_from(
        404, b'{"error": "No dispatch x", "type": "DispatchNotFoundError"}', "u"
    )
    assert isinstance(error, DispatchNotFoundError) and str(error) == "No dispatch x"
    # A class name from elsewhere is never made: the status decides.
    error = protocol.error_from(401, b'{"error": "no", "type": "os.system"}', "http://h:1")
    assert isinstance(error, ServerAuthError) and "http://h:1" in str(error)
    error = protocol.error_from(502, b"<html>bad gateway</html>", "http://h:1")
    assert type(error) is ServerError and "502" in str(error)
    assert issubclass(VersionMismatchError, ServerError)


@pytest.mark.parametrize(
    ("given", "url"),
    [("h:1", "http://h:1"), ("https://h/", "https://h"), ("http://10.0.0.1:48008", None)],
)
def test_server_addresses(given, url):
    assert server_url(given) == (url or given)


@pytest.mark.parametrize("bad", ["", "ftp://h", "http://", 7])
def test_a_bad_server_address_says_what_is_valid(bad):
    with pytest.raises(QflowInputError, match="HOST:PORT"):
        server_url(bad)  # type: ignore[arg-type]


def test_the_server_is_chosen_by_argument_then_environment_then_login(tmp_path, monkeypatch):
    monkeypatch.setenv("QFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("QFLOW_SERVER", raising=False)
    monkeypatch.delenv("QFLOW_TOKEN", raising=False)
    assert client_for() is None  # nothing chosen: local
    path = login("saved:1", "tok")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert client_for().url == "http://saved:1" and client_for().token == "tok"
    monkeypatch.setenv("QFLOW_SERVER", "env:2")
    monkeypatch.setenv("QFLOW_TOKEN", "t2")
    assert (client_for().url, client_for().token) == ("http://env:2", "t2")
    assert client_for("arg:3").url == "http://arg:3"
    with pytest.raises(QflowInputError, match="status_only= and the other flags"):
        client_for(True)  # type: ignore[arg-type]


def test_covalents_dispatcher_settings_choose_the_server(monkeypatch, tmp_path):
    import qflow as ct

    monkeypatch.setenv("QFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("QFLOW_SERVER", raising=False)
    try:
        ct.set_config({"dispatcher.address": "10.1.2.3", "dispatcher.port": 48008})
        assert client_for().url == "http://10.1.2.3:48008"
        ct.set_config("dispatcher.address", "https://qflow.example.org:9443")
        assert client_for().url == "https://qflow.example.org:9443"
    finally:
        ct.reload_config()
    assert client_for() is None


def test_plain_http_off_loopback_is_warned_about():
    from qflow.server.serve import parse_listen, plain_http_warning

    assert plain_http_warning("::1", tls=False) is None
    assert plain_http_warning("10.0.0.5", tls=True) is None
    assert "SSH tunnel" in plain_http_warning("10.0.0.5", tls=False)
    with pytest.raises(QflowInputError, match="HOST:PORT"):
        parse_listen("48008")


def test_secrets_are_set_listed_and_removed_but_never_returned(tmp_path):
    api = TestClient(api_app(SQLiteStore(str(tmp_path / "qflow.db")), TOKEN))
    value = "api-secret-value-0005"
    refused = api.put("/secrets/API_KEY", json={"value": value})
    assert refused.status_code == 401 and not (tmp_path / "secrets").exists()
    done = api.put("/secrets/API_KEY", json={"value": value}, headers=_headers())
    assert done.status_code == 200 and value not in done.text
    assert (tmp_path / "secrets" / "API_KEY").read_text() == value
    listed = api.get("/secrets", headers=_headers())
    assert [e["name"] for e in listed.json()["secrets"]] == ["API_KEY"]
    assert value not in listed.text
    bad = api.put("/secrets/not%20a%20name", json={"value": value}, headers=_headers())
    assert bad.status_code == 400 and "environment variable name" in bad.json()["error"]
    short = api.put("/secrets/SHORT_KEY", json={"value": "q7z"}, headers=_headers())
    assert short.status_code == 400 and "q7z" not in short.json()["error"]
    gone = api.delete("/secrets/API_KEY", headers=_headers())
    assert gone.json() == {"name": "API_KEY", "removed": True}


def test_an_upload_the_server_cannot_keep_is_refused_saying_where(tmp_path):
    """The server spools uploads under its home; when it cannot write there (here the
    uploads folder is a file), the client is told so and where, not a bare 500."""
    store = SQLiteStore(tmp_path / "qflow.db")
    (tmp_path / "uploads").write_text("in the way")
    api = TestClient(api_app(store, TOKEN))
    answer = api.post("/dispatches", content=b"anything", headers=_headers())
    assert answer.json()["type"] == "StoreError"
    assert "could not keep the upload in" in answer.json()["error"]
    assert str(tmp_path / "uploads") in answer.json()["error"]
    assert store.list_dispatches() == []
