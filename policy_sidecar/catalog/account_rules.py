"""The rules an account must satisfy, checked where accounts enter (admin API, YAML).

The same rules as the CHECK constraints of 0004_provider_accounts.sql, checked first so
an error names the request's field. Pure: the credentials directory is checked by the
caller that has one (`credential_file`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from policy_sidecar.catalog.accounts import ACCOUNT_NAME, CREDENTIAL_HEADERS, ProviderAccount

__all__ = [
    "ACCOUNT_NAME",
    "CREDENTIAL_REF",
    "HOST",
    "PROVIDERS",
    "account_problems",
    "credential_file",
    "fallback_group_problems",
]

# A plain file name (a key of a Kubernetes Secret): no path, no leading dot.
CREDENTIAL_REF: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A DNS name or an IPv4 address: no scheme, no port, no path.
HOST: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
PROVIDERS: Final = tuple(sorted(CREDENTIAL_HEADERS))


def account_problems(
    *,
    name: str | None = None,
    provider: str | None = None,
    base_host: str | None = None,
    port: int | None = None,
    credential_ref: str | None = None,
    ca_file: str | None = None,
    tokens_per_minute: int | None = None,
    requests_per_minute: int | None = None,
) -> list[tuple[str, str]]:
    """(field, problem) for each given field that breaks a rule; None: not checked."""
    out: list[tuple[str, str]] = []
    if name is not None and not ACCOUNT_NAME.fullmatch(name):
        out.append(("name", f"must match {ACCOUNT_NAME.pattern} (it is the Envoy cluster name)"))
    if provider is not None and provider not in PROVIDERS:
        out.append(("provider", f"unknown provider; one of {', '.join(PROVIDERS)}"))
    if base_host is not None and not HOST.fullmatch(base_host):
        out.append(("base_host", "must be a host name without scheme, port or path"))
    if port is not None and not 1 <= port <= 65535:
        out.append(("port", "must be between 1 and 65535"))
    if credential_ref is not None and not CREDENTIAL_REF.fullmatch(credential_ref):
        out.append(
            (
                "credential_ref",
                f"must match {CREDENTIAL_REF.pattern}: the name of a secret, never the key",
            )
        )
    if ca_file is not None and not ca_file.startswith("/"):
        out.append(("ca_file", "must be an absolute path"))
    for field, value in (
        ("tokens_per_minute", tokens_per_minute),
        ("requests_per_minute", requests_per_minute),
    ):
        if value is not None and value < 0:
            out.append((field, "must not be negative (0: no quota)"))
    return out


def credential_file(directory: Path, credential_ref: str) -> Path:
    """Where the credential named `credential_ref` lives in a credentials directory: one
    SDS file per secret, `<ref>.yaml` (envoy.upstreams.secret_path; a mounted Kubernetes
    Secret with that key lays it out the same way)."""
    return directory / f"{credential_ref}.yaml"


def fallback_group_problems(
    name: str, members: Sequence[str], accounts: Mapping[str, ProviderAccount]
) -> list[tuple[str, str]]:
    """(field, problem) for a fallback group (``name``, ``accounts``) over the known
    ``accounts``: a plain name no account has, two or more distinct accounts, each
    known and enabled, all of one provider. The one rule set of both the accounts file
    (``render-envoy``) and the admin API."""
    out: list[tuple[str, str]] = []
    if not ACCOUNT_NAME.fullmatch(name):
        out.append(("name", f"must match {ACCOUNT_NAME.pattern} (it is the Envoy cluster name)"))
    elif name in accounts:
        out.append(("name", f"{name!r} is an account's name: a group needs one no account has"))
    if len(members) < 2 or len(set(members)) != len(members):
        out.append(("accounts", "two or more distinct accounts"))
    providers: dict[str, None] = {}
    for member in members:
        account = accounts.get(member)
        if account is None:
            out.append(("accounts", f"no enabled account {member!r} (unknown account)"))
        elif not account.enabled:
            out.append(("accounts", f"no enabled account {member!r} (it is disabled)"))
        else:
            providers[account.provider] = None
    if len(providers) > 1:
        out.append(("accounts", f"its accounts are of one provider, not {', '.join(providers)}"))
    return out
