"""The provider accounts file render-envoy reads: strict, errors name account and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.envoy.accounts_file import load_accounts_file

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
