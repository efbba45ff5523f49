"""Where a secret's value comes from: the home's keep first, then the providers named in
``QFLOW_SECRET_PROVIDERS`` (entry points of the group ``qflow.secrets``), in order.

A provider is one class with one required method, :meth:`SecretsProvider.get`. qflow
ships two, as extras: ``aws`` (AWS Secrets Manager, ``pip install
'qflow-runtime[aws-secrets]'``) and ``vault`` (HashiCorp Vault's KV store, ``pip
install 'qflow-runtime[vault]'``).

Example:
    >>> class Fixed(SecretsProvider):
    ...     def get(self, name):
    ...         return "s3cret-value" if name == "DEMO_KEY" else None
    >>> Fixed().get("DEMO_KEY")
    's3cret-value'
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from qflow.exceptions import QflowConfigError
from qflow.secrets.keep import SecretKeep

__all__ = [
    "AwsSecretsManager",
    "HashiCorpVault",
    "SecretsProvider",
    "missing",
    "missing_text",
    "providers",
    "resolve",
]

GROUP = "qflow.secrets"


class SecretsProvider(abc.ABC):
    """A source of secret values beside the home's keep."""

    @abc.abstractmethod
    def get(self, name: str) -> str | None:
        """The value of ``name``, or None if this provider has no such secret.

        Raises:
            QflowConfigError: the provider cannot be reached or is not configured; say
                what to install or set.
        """


def providers() -> list[SecretsProvider]:
    """The providers ``QFLOW_SECRET_PROVIDERS`` names (comma-separated), in order."""
    wanted = [p.strip() for p in os.environ.get("QFLOW_SECRET_PROVIDERS", "").split(",")]
    wanted = [p for p in wanted if p]
    if not wanted:
        return []
    found = {ep.name: ep for ep in metadata.entry_points(group=GROUP)}
    out = []
    for name in wanted:
        if name not in found:
            raise QflowConfigError(
                f"QFLOW_SECRET_PROVIDERS names {name!r}, which no installed package "
                f"provides; available: {', '.join(sorted(found)) or 'none'} (entry-point "
                f"group {GROUP!r})."
            )
        cls = found[name].load()
        out.append(cls())
    return out


def resolve(names: Sequence[str], keep: SecretKeep) -> dict[str, str]:
    """The values of ``names``: the keep's, else the first provider's that has one.

    Raises:
        QflowConfigError: a name nobody has; it says how to set it.
    """
    values, absent = _lookup(names, keep)
    if absent:
        raise QflowConfigError(missing_text(absent, keep))
    return values


def missing(names: Sequence[str], keep: SecretKeep) -> list[str]:
    """The ``names`` neither the keep nor a provider has."""
    return _lookup(names, keep)[1]


def _lookup(names: Sequence[str], keep: SecretKeep) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    for name in names:
        value = keep.get(name)
        if value is not None:
            values[name] = value
    if len(values) < len(names):
        chain = providers()
        for name in names:
            for provider in chain if name not in values else ():
                value = provider.get(name)
                if value is not None:
                    values[name] = value
                    break
    return values, [n for n in names if n not in values]


def missing_text(absent: Sequence[str], keep: SecretKeep) -> str:
    """What to tell a user whose dispatch asks for secrets nobody has."""
    chain = os.environ.get("QFLOW_SECRET_PROVIDERS")
    return (
        f"No value for secret{'s' if len(absent) > 1 else ''} {', '.join(absent)} in "
        f"{keep.folder}{f' or the providers {chain}' if chain else ''}, so nothing was "
        f"run. Set it where the dispatcher runs: `qflow secret set {absent[0]}` (it reads "
        "the value from a prompt or stdin), adding `--server URL` for a qflow server."
    )


class AwsSecretsManager(SecretsProvider):
    """AWS Secrets Manager: secret ``NAME`` is read from ``$QFLOW_AWS_SECRET_PREFIX`` +
    ``NAME`` (a plain string secret), with boto3's usual credentials and region."""

    def __init__(self) -> None:
        try:
            import boto3
        except ImportError:
            raise QflowConfigError(
                "The 'aws' secrets provider needs boto3: pip install 'qflow-runtime[aws-secrets]'."
            ) from None
        self.prefix = os.environ.get("QFLOW_AWS_SECRET_PREFIX", "")
        self._client: Any = boto3.client("secretsmanager")

    def get(self, name: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_secret_value(SecretId=self.prefix + name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise QflowConfigError(
                f"AWS Secrets Manager refused secret {self.prefix + name}: "
                f"{exc.response.get('Error', {}).get('Code')}. Check the credentials and "
                "the IAM policy of the machine the dispatcher runs on."
            ) from None
        except BotoCoreError as exc:
            raise QflowConfigError(
                f"AWS Secrets Manager could not be reached for secret {name}: {type(exc).__name__}"
                ". Configure AWS credentials and a region (aws configure, or AWS_* variables) "
                "where the dispatcher runs."
            ) from None
        value = answer.get("SecretString")
        return value if isinstance(value, str) else None


class HashiCorpVault(SecretsProvider):
    """HashiCorp Vault's KV version 2 store: secret ``NAME`` is the ``value`` field at
    ``$QFLOW_VAULT_PATH/NAME`` (default ``qflow/NAME``) of the mount
    ``$QFLOW_VAULT_MOUNT`` (default ``secret``), with ``VAULT_ADDR`` and ``VAULT_TOKEN``."""

    def __init__(self) -> None:
        try:
            import hvac
        except ImportError:
            raise QflowConfigError(
                "The 'vault' secrets provider needs hvac: pip install 'qflow-runtime[vault]'."
            ) from None
        url, token = os.environ.get("VAULT_ADDR"), os.environ.get("VAULT_TOKEN")
        if not url or not token:
            raise QflowConfigError(
                "The 'vault' secrets provider needs VAULT_ADDR and VAULT_TOKEN set where the "
                "dispatcher runs."
            )
        self.mount = os.environ.get("QFLOW_VAULT_MOUNT", "secret")
        self.path = os.environ.get("QFLOW_VAULT_PATH", "qflow").strip("/")
        self._client: Any = hvac.Client(url=url, token=token)

    def get(self, name: str) -> str | None:
        import hvac.exceptions

        try:
            answer = self._client.secrets.kv.v2.read_secret_version(
                path=f"{self.path}/{name}", mount_point=self.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        except hvac.exceptions.VaultError as exc:
            raise QflowConfigError(
                f"Vault refused secret {self.path}/{name}: {type(exc).__name__}. Check "
                "VAULT_TOKEN and its policy."
            ) from None
        except Exception as exc:  # requests' connection errors, named by type only
            raise QflowConfigError(
                f"Vault at {os.environ.get('VAULT_ADDR')} could not be reached for secret "
                f"{name}: {type(exc).__name__}."
            ) from None
        value = (answer.get("data") or {}).get("data", {}).get("value")
        return value if isinstance(value, str) else None
