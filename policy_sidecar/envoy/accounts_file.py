"""Provider accounts from a YAML file, for rendering static Envoy configs.

The shipped compose and Kubernetes configs render their clusters from a file with a
``provider_accounts`` list (the same key a standalone config uses); production
renders them at runtime from Postgres. Unknown keys and bad values are refused with
the account and field named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, get_args

import yaml

from policy_sidecar.catalog.accounts import (
    ACCOUNT_NAME,
    FallbackGroup,
    ProviderAccount,
    ProviderName,
)

_FIELDS = {f.name: f for f in dataclasses.fields(ProviderAccount)}
_REQUIRED = ("name", "provider", "base_host", "credential_ref")
_INTS = ("port", "tokens_per_minute", "requests_per_minute")
_STRINGS = ("name", "provider", "base_host", "credential_ref", "ca_file", "address")


def _document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("provider_accounts"), list):
        raise ValueError(f"{path}: expected a 'provider_accounts' list")
    unknown = sorted(set(document) - {"provider_accounts", "fallback_groups"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return document


def load_fallback_groups(path: Path) -> tuple[FallbackGroup, ...]:
    """The optional ``fallback_groups`` list: ``{name, accounts: [first, then, ...]}``.
    Whether the accounts exist and agree is checked when the clusters are rendered."""
    items = _document(path).get("fallback_groups") or []
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'fallback_groups' must be a list")
    groups = []
    for i, item in enumerate(items):
        where = f"{path}: fallback_groups[{i}]"
        if not isinstance(item, dict) or set(item) != {"name", "accounts"}:
            raise ValueError(f"{where}: expected exactly 'name' and 'accounts'")
        name, accounts = item["name"], item["accounts"]
        if not isinstance(name, str) or not ACCOUNT_NAME.match(name):
            raise ValueError(f"{where}: 'name' must be lowercase letters, digits, -")
        if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
            raise ValueError(f"{where}: 'accounts' must be a list of account names")
        groups.append(FallbackGroup(name, tuple(accounts)))
    return tuple(groups)


def load_accounts_file(path: Path) -> tuple[ProviderAccount, ...]:
    document = _document(path)
    accounts = tuple(
        parse_account(item, f"{path}: provider_accounts[{i}]")
        for i, item in enumerate(document["provider_accounts"])
    )
    names = [a.name for a in accounts]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{path}: provider account {name!r} is listed twice")
    return accounts


def parse_account(item: Any, where: str) -> ProviderAccount:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for key in _REQUIRED:
        if key not in item:
            raise ValueError(f"{where}: '{key}' is required")
    for key in _STRINGS:
        if key in item and item[key] is not None and not isinstance(item[key], str):
            raise ValueError(f"{where}: '{key}' must be a string")
    for key in _INTS:
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{where}: '{key}' must be an integer")
    if "enabled" in item and not isinstance(item["enabled"], bool):
        raise ValueError(f"{where}: 'enabled' must be true or false")
    if not ACCOUNT_NAME.match(item["name"]):
        raise ValueError(f"{where}: 'name' {item['name']!r} must be lowercase letters, digits, -")
    if not ACCOUNT_NAME.match(item["credential_ref"]):
        raise ValueError(f"{where}: 'credential_ref' must be lowercase letters, digits, -")
    if item["provider"] not in get_args(ProviderName):
        raise ValueError(f"{where}: 'provider' must be one of {', '.join(get_args(ProviderName))}")
    if not 0 < item.get("port", 443) < 65536:
        raise ValueError(f"{where}: 'port' must be 1-65535")
    return ProviderAccount(**item)
