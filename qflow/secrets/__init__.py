"""Credentials: kept where the dispatcher runs, granted at run time to the electrons
that ask for them, and kept out of everything qflow, Ray and Slurm write.

Example:
    >>> import qflow
    >>> @qflow.electron(secrets=["IONQ_API_KEY"])
    ... def submit(circuit):
    ...     return len(qflow.secret("IONQ_API_KEY"))
"""

from qflow.secrets.grant import SecretLease, SecretsGrant, secret
from qflow.secrets.keep import SecretEntry, SecretKeep, check_name
from qflow.secrets.providers import SecretsProvider

__all__ = [
    "SecretEntry",
    "SecretKeep",
    "SecretLease",
    "SecretsGrant",
    "SecretsProvider",
    "check_name",
    "secret",
]
