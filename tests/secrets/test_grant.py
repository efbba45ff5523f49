"""Granting secrets to one call: its thread only, for the call only, redacted after."""

from __future__ import annotations

import os
import pickle
import threading
import warnings

import pytest

import qflow
from qflow.exceptions import QflowConfigError, QflowError, QflowInputError
from qflow.secrets import SecretKeep, SecretLease, SecretsGrant, secret
from qflow.secrets.checks import CredentialWarning, credential_globals

KEY = "value-of-the-key-0001"
OTHER = "value-of-another-0002"

API_TOKEN = "sk-live-looks-real"  # a module global a by-value electron may read


@pytest.fixture
def keep(tmp_path):
    keep = SecretKeep(tmp_path / "secrets")
    keep.set("A_KEY", KEY)
    keep.set("B_KEY", OTHER)
    return keep


def _grant(keep, *names):
    return SecretsGrant(tuple(names), str(keep.folder))


def test_the_call_sees_its_secret_and_the_environment_is_restored_after(keep, monkeypatch):
    monkeypatch.setenv("A_KEY", "the shell's own")
    with SecretLease(_grant(keep, "A_KEY")):
        assert os.environ["A_KEY"] == KEY and os.getenv("A_KEY") == KEY
        assert secret("A_KEY") == KEY
        assert dict(os.environ)["A_KEY"] == KEY  # what a subprocess is given
        assert "B_KEY" not in os.environ
    assert os.environ["A_KEY"] == "the shell's own"
    with pytest.raises(QflowError, match=r'secrets=\["A_KEY"\]'):
        secret("A_KEY")


def test_two_calls_at_once_never_see_each_others_secrets(keep):
    seen: dict[str, tuple] = {}
    both_in = threading.Barrier(3)

    def call(name):
        with SecretLease(_grant(keep, name)):
            both_in.wait(timeout=10)
            seen[name] = (os.environ.get("A_KEY"), os.environ.get("B_KEY"))
            both_in.wait(timeout=10)

    threads = [threading.Thread(target=call, args=(n,)) for n in ("A_KEY", "B_KEY")]
    for t in threads:
        t.start()
    both_in.wait(timeout=10)
    assert "A_KEY" not in os.environ and "B_KEY" not in os.environ  # nor this thread
    both_in.wait(timeout=10)
    for t in threads:
        t.join()
    assert seen == {"A_KEY": (KEY, None), "B_KEY": (None, OTHER)}


def test_redaction_of_text_and_exceptions(keep):
    lease = SecretLease(_grant(keep, "A_KEY", "B_KEY"))
    with lease:
        pass
    assert lease.redact(f"a={KEY} b={OTHER}") == "a=[secret A_KEY] b=[secret B_KEY]"
    try:
        try:
            raise KeyError(f"lookup of {OTHER}")
        except KeyError as inner:
            raise RuntimeError(f"refused {KEY}", 7) from inner
    except RuntimeError as exc:
        lease.scrub(exc)
        assert exc.args == ("refused [secret A_KEY]", 7) and isinstance(exc, RuntimeError)
        assert exc.__cause__.args == ("lookup of [secret B_KEY]",)
    lease.close()
    assert lease.redact(KEY) == KEY  # nothing held once closed


def test_a_missing_secret_fails_the_call_naming_the_command(keep):
    with pytest.raises(QflowConfigError, match="qflow secret set NOT_KEPT"):
        with SecretLease(_grant(keep, "NOT_KEPT")):
            pass


def test_options_take_names_and_a_lattice_adds_its_own():
    @qflow.electron(secrets="A_KEY")
    def one():
        return 1

    @qflow.electron
    def two():
        return 2

    @qflow.lattice(secrets=["B_KEY"])
    def flow():
        return one(), two()

    graph = flow.build_graph()
    asked = {n.name: n.options.secrets for n in graph.nodes if n.name in ("one", "two")}
    assert asked == {"one": ("B_KEY", "A_KEY"), "two": ("B_KEY",)}
    with pytest.raises(QflowInputError, match="environment variable name"):
        qflow.electron(secrets=["not ok"])
    with pytest.raises(QflowConfigError, match="list of secret names"):
        qflow.electron(secrets=42)


def test_credential_globals_are_found_in_by_value_functions():
    def reads_token():
        return API_TOKEN

    reads_token.__module__ = "__main__"  # as a script's function is: pickled by value
    assert credential_globals([reads_token]) == [("reads_token", "API_TOKEN")]
    assert credential_globals([qflow.secret]) == []  # importable: pickled by reference


def test_runtime_env_vars_warn_and_point_to_secrets():
    with pytest.warns(CredentialWarning, match="secrets="):
        qflow.electron(runtime_env={"env_vars": {"IONQ_API_KEY": "x"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qflow.electron(runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})


def test_dispatch_refuses_a_secret_nobody_has(monkeypatch, tmp_path):
    monkeypatch.delenv("QFLOW_SECRET_PROVIDERS", raising=False)

    @qflow.electron(secrets=["NEVER_SET_KEY"])
    def needs():
        return 1

    @qflow.lattice
    def flow():
        return needs()

    before = len(qflow.get_result.__globals__["_runtime"]().store.list_dispatches(1000))
    with pytest.raises(QflowConfigError, match="qflow secret set NEVER_SET_KEY"):
        qflow.dispatch(flow)()
    after = len(qflow.get_result.__globals__["_runtime"]().store.list_dispatches(1000))
    assert after == before  # nothing recorded, nothing run


def test_an_output_holding_a_granted_value_is_refused(keep):
    lease = SecretLease(_grant(keep, "A_KEY"))
    with lease:
        pass
    lease.refuse_in(b"nothing secret here", "The output of electron x(1)")
    with pytest.raises(QflowError, match="contains the value of secret A_KEY") as info:
        lease.refuse_in(pickle.dumps({"key": KEY}), "The output of electron x(1)")
    assert KEY not in str(info.value)


def test_dispatch_warns_of_a_credential_global_pickled_with_a_script_function():
    from qflow.core.launch import build

    def reads_token():
        return API_TOKEN

    reads_token.__module__ = "__main__"

    @qflow.lattice
    def flow():
        return qflow.electron(reads_token)()

    with pytest.warns(CredentialWarning, match="API_TOKEN.*secrets="):
        build(flow, (), {})


def test_a_secret_never_travels_as_a_runtime_env_var():
    """Ray logs a runtime_env's env_vars in plain text: a secret's name there is refused,
    on the electron and once merged with its lattice's options."""
    with pytest.warns(CredentialWarning), pytest.raises(QflowConfigError, match="env_var"):
        qflow.electron(secrets=["A_KEY"], runtime_env={"env_vars": {"A_KEY": "x"}})

    @qflow.electron(secrets=["B_KEY"])
    def asks():
        return 1

    with pytest.warns(CredentialWarning):
        leaky = qflow.lattice(runtime_env={"env_vars": {"B_KEY": "x"}})(lambda: asks())
    with pytest.raises(QflowConfigError, match="B_KEY is both a secret and a runtime_env"):
        leaky.build_graph()
