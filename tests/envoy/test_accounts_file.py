"""The provider accounts file render-envoy reads: strict, errors name account and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.envoy.accounts_file import load_accounts_file, load_fallback_groups

GOOD = """
provider_accounts:
  - {name: openai-prod, provider: openai, base_host: api.openai.com, credential_ref: openai-prod}
  - name: azure-eu
    provider: azure
    base_host: contoso.openai.azure.com
    credential_ref: azure-eu
    ca_file: /etc/ssl/private-ca.pem
    enabled: false
"""


def test_a_good_file_gives_the_accounts(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(GOOD)
    openai, azure = load_accounts_file(path)
    assert openai == ProviderAccount(
        name="openai-prod",
        provider="openai",
        base_host="api.openai.com",
        credential_ref="openai-prod",
    )
    assert azure.ca_file == "/etc/ssl/private-ca.pem" and azure.enabled is False


BASE = "{name: a, provider: openai, base_host: h, credential_ref: a"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[]", "provider_accounts"),
        ("provider_accounts: [1]", r"provider_accounts\[0\]: expected a mapping"),
        ("provider_accounts: [{name: a}]", "'provider' is required"),
        (f"provider_accounts: [{BASE}, api_key: sk}}]", "unknown field.*api_key"),
        (f"provider_accounts: [{BASE}, port: '443'}}]", "'port' must be an integer"),
        (f"provider_accounts: [{BASE}, port: 0}}]", "'port' must be 1-65535"),
        (f"provider_accounts: [{BASE}, enabled: 'yes'}}]", "'enabled'"),
        (
            "provider_accounts: [{name: A_B, provider: openai, base_host: h, credential_ref: a}]",
            "'name'",
        ),
        (
            "provider_accounts: [{name: a, provider: bedrock, base_host: h, credential_ref: a}]",
            "'provider' must be one of",
        ),
        (f"provider_accounts: [{BASE}}}, {BASE}}}]", "'a' is listed twice"),
        ("provider_accounts: [", "accounts.yaml"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        load_accounts_file(path)


def test_fallback_groups_are_read_in_order(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(GOOD + "fallback_groups:\n  - {name: any, accounts: [openai-prod, azure-eu]}\n")
    assert load_fallback_groups(path) == (FallbackGroup("any", ("openai-prod", "azure-eu")),)
    path.write_text(GOOD)
    assert load_fallback_groups(path) == ()


@pytest.mark.parametrize(
    ("tail", "error"),
    [
        ("fallback_groups: {name: x}\n", "must be a list"),
        ("fallback_groups:\n  - {name: x}\n", "exactly 'name' and 'accounts'"),
        ("fallback_groups:\n  - {name: X_Y, accounts: [a, b]}\n", "'name' must be"),
        ("fallback_groups:\n  - {name: x, accounts: a}\n", "list of account names"),
        ("fallback_group: []\n", "unknown key"),
    ],
)
def test_a_bad_fallback_group_is_refused_naming_it(tmp_path: Path, tail: str, error: str) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(GOOD + tail)
    with pytest.raises(ValueError, match=error):
        load_fallback_groups(path)
