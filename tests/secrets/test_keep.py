"""The keep, the CLI that fills it, and the providers beside it (no Ray)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from qflow.cli import main
from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.secrets import SecretKeep, SecretsProvider
from qflow.secrets import providers as providers_module
from qflow.secrets.providers import AwsSecretsManager, missing, resolve

VALUE = "not-a-real-key-1234"


def test_set_get_list_remove(tmp_path):
    keep = SecretKeep(tmp_path / "secrets")
    assert keep.entries() == [] and keep.get("IONQ_API_KEY") is None
    keep.set("IONQ_API_KEY", VALUE)
    keep.set("IONQ_API_KEY", VALUE + "-2")  # replaced, atomically
    assert keep.get("IONQ_API_KEY") == VALUE + "-2"
    assert [e.name for e in keep.entries()] == ["IONQ_API_KEY"]
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets" / "IONQ_API_KEY").stat().st_mode) == 0o600
    assert keep.remove("IONQ_API_KEY") and not keep.remove("IONQ_API_KEY")


@pytest.mark.parametrize("name", ["", "1KEY", "A-B", "../etc/passwd", "KEY NAME", None])
def test_bad_names_are_refused_with_the_rule(tmp_path, name):
    with pytest.raises(QflowInputError, match="environment variable name"):
        SecretKeep(tmp_path).set(name, VALUE)  # type: ignore[arg-type]


def test_short_or_empty_values_are_refused_without_echoing_them(tmp_path):
    with pytest.raises(QflowInputError, match="shorter than 4") as info:
        SecretKeep(tmp_path).set("PIN", "ab1")
    assert "ab1" not in str(info.value)


def test_cli_set_from_stdin_and_env_list_rm(tmp_path, monkeypatch):
    monkeypatch.setenv("QFLOW_HOME", str(tmp_path))
    for name in ("QFLOW_SERVER", "QFLOW_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    said = runner.invoke(main, ["secret", "set", "IONQ_API_KEY"], input=VALUE + "\n")
    assert said.exit_code == 0, said.output
    assert VALUE not in said.output and "IONQ_API_KEY" in said.output
    monkeypatch.setenv("MY_VAR", VALUE + "-env")
    said = runner.invoke(main, ["secret", "set", "DB_PASSWORD", "--from-env", "MY_VAR"])
    assert said.exit_code == 0, said.output
    assert SecretKeep.of_home(tmp_path).get("DB_PASSWORD") == VALUE + "-env"
    listed = runner.invoke(main, ["secret", "list"])
    assert "IONQ_API_KEY" in listed.output and "DB_PASSWORD" in listed.output
    assert VALUE not in listed.output
    gone = runner.invoke(main, ["secret", "rm", "DB_PASSWORD"])
    assert gone.exit_code == 0 and "removed" in gone.output
    again = runner.invoke(main, ["secret", "rm", "DB_PASSWORD"])
    assert again.exit_code != 0 and "no secret DB_PASSWORD" in again.output
    unset = runner.invoke(main, ["secret", "set", "X_KEY", "--from-env", "NOT_SET_ANYWHERE"])
    assert unset.exit_code != 0 and "NOT_SET_ANYWHERE" in unset.output


def test_cli_prompt_does_not_echo(tmp_path):
    """Through a real terminal: the typed value is not shown back."""
    import pty

    env = {**os.environ, "QFLOW_HOME": str(tmp_path)}
    env.pop("QFLOW_SERVER", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.execve(
            sys.executable, [sys.executable, "-m", "qflow.cli", "secret", "set", "TTY_KEY"], env
        )
    seen = b""
    while b"value of TTY_KEY" not in seen:
        seen += os.read(fd, 1024)
    os.write(fd, VALUE.encode() + b"\n")
    try:
        while chunk := os.read(fd, 1024):
            seen += chunk
    except OSError:  # the terminal closes when the child exits
        pass
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert VALUE.encode() not in seen
    assert SecretKeep.of_home(tmp_path).get("TTY_KEY") == VALUE


class _Fixed(SecretsProvider):
    def get(self, name: str) -> str | None:
        return "from-provider-0001" if name == "VAULTED_KEY" else None


def test_keep_first_then_providers_then_a_clear_refusal(tmp_path, monkeypatch):
    keep = SecretKeep(tmp_path)
    keep.set("KEPT_KEY", VALUE)
    monkeypatch.setattr(providers_module, "providers", lambda: [_Fixed()])
    assert resolve(("KEPT_KEY", "VAULTED_KEY"), keep) == {
        "KEPT_KEY": VALUE,
        "VAULTED_KEY": "from-provider-0001",
    }
    assert missing(("KEPT_KEY", "NOWHERE_KEY"), keep) == ["NOWHERE_KEY"]
    with pytest.raises(QflowConfigError, match="qflow secret set NOWHERE_KEY"):
        resolve(("NOWHERE_KEY",), keep)


def test_unknown_provider_names_the_installed_ones(monkeypatch):
    monkeypatch.setenv("QFLOW_SECRET_PROVIDERS", "nosuch")
    with pytest.raises(QflowConfigError, match="available: .*aws.*vault"):
        providers_module.providers()


def test_shipped_providers_are_entry_points(monkeypatch):
    monkeypatch.setenv("QFLOW_SECRET_PROVIDERS", "aws")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    [aws] = providers_module.providers()
    assert isinstance(aws, AwsSecretsManager)


def test_aws_provider_reads_and_misses(monkeypatch):
    """AWS Secrets Manager cannot exist here: botocore's Stubber answers for it."""
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("QFLOW_AWS_SECRET_PREFIX", "qflow/")
    aws = AwsSecretsManager()
    with Stubber(aws._client) as stub:
        stub.add_response(
            "get_secret_value",
            {"SecretString": VALUE, "Name": "qflow/IONQ_API_KEY"},
            {"SecretId": "qflow/IONQ_API_KEY"},
        )
        stub.add_client_error(
            "get_secret_value", "ResourceNotFoundException", expected_params={"SecretId": "qflow/X"}
        )
        stub.add_client_error(
            "get_secret_value", "AccessDeniedException", expected_params={"SecretId": "qflow/Y"}
        )
        assert aws.get("IONQ_API_KEY") == VALUE
        assert aws.get("X") is None
        with pytest.raises(QflowConfigError, match="AccessDeniedException.*IAM"):
            aws.get("Y")


def test_vault_provider_says_what_it_needs(monkeypatch):
    from qflow.secrets.providers import HashiCorpVault

    try:
        import hvac  # noqa: F401
    except ImportError:
        with pytest.raises(QflowConfigError, match=r"pip install 'qflow-runtime\[vault\]'"):
            HashiCorpVault()
        return
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(QflowConfigError, match="VAULT_ADDR and VAULT_TOKEN"):
        HashiCorpVault()


def test_module_runs_as_cli_entry():
    done = subprocess.run(
        [sys.executable, "-m", "qflow.cli", "secret", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "never printed" in done.stdout
