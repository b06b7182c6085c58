"""Provider accounts in the standalone YAML: parsed, referenced by models, errors named."""

from __future__ import annotations

import pytest

from policy_sidecar.store.standalone import ConfigError, parse_standalone_config

GOOD = """\
accounts:
  - name: openai-prod
    provider: openai
    base_host: api.openai.com
    credential_ref: openai-prod-key
    tokens_per_minute: 200000
    requests_per_minute: 100
models:
  - name: gpt-4o-mini
    provider: openai
    account: openai-prod
  - name: local
    provider: openai
    route: openai
"""


def test_accounts_load_and_models_route_to_their_cluster() -> None:
    config = parse_standalone_config(GOOD, source="c.yaml")
    account = config.accounts["openai-prod"]
    assert (account.tokens_per_minute, account.requests_per_minute, account.port) == (
        200_000,
        100,
        443,
    )
    mini = config.models["gpt-4o-mini"]
    assert (mini.route, mini.account) == ("openai-prod", "openai-prod")
    assert (config.models["local"].route, config.models["local"].account) == ("openai", None)


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        (
            "account: openai-prod",
            "account: ghost",
            11,
            "models[0].account: unknown account 'ghost'",
        ),
        ("name: openai-prod", "name: OpenAI_Prod", 2, "accounts[0].name: must match"),
        ("base_host: api.openai.com", "base_host: https://x/", 4, "accounts[0].base_host"),
        (
            "credential_ref: openai-prod-key",
            "credential_ref: ../k",
            5,
            "accounts[0].credential_ref",
        ),
        ("provider: openai\n    base", "provider: acme\n    base", 3, "accounts[0].provider"),
        ("tokens_per_minute: 200000", "tokens_per_minute: 0", 6, "tokens_per_minute"),
        ("    account: openai-prod", "    account: openai-prod\n    route: x", 12, "either"),
        ("provider: openai\n    account", "provider: azure\n    account", 11, "openai account"),
        ("credential_ref: openai-prod-key", "credential_ref: k\n    api_key: sk-1", 6, "api_key"),
    ],
)
def test_mistakes_name_line_and_field(old: str, new: str, line: int, fragment: str) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        parse_standalone_config(text, source="c.yaml")
    message = str(info.value)
    assert message.startswith(f"c.yaml:{line}:"), message
    assert fragment in message, message


def test_duplicate_account() -> None:
    text = GOOD.replace("models:", GOOD.split("models:")[0].replace("accounts:\n", "") + "models:")
    with pytest.raises(ConfigError, match=r"c.yaml:8: accounts\[1\].name: duplicate account"):
        parse_standalone_config(text, source="c.yaml")


def test_catalog_routes_a_stored_model_on_an_account_to_its_cluster() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from policy_sidecar.store.model_catalog import deployment_from
    from policy_sidecar.store.records import Model

    now = datetime.now(UTC)
    model = Model(
        id="mdl_1",
        name="gpt-4o",
        provider="openai",
        upstream_model="gpt-4o",
        upstream_cluster="",
        context_window=None,
        input_price_per_mtok=Decimal(0),
        output_price_per_mtok=Decimal(0),
        cached_input_price_per_mtok=Decimal(0),
        enabled=True,
        version=1,
        created_at=now,
        updated_at=now,
        account="openai-prod",
    )
    deployment = deployment_from(model)
    assert (deployment.route, deployment.account) == ("openai-prod", "openai-prod")


AZURE = """\
models:
  - name: gpt-4o
    provider: azure
    upstream_model: gpt-4o-2024-08-06
    azure_deployment: gpt4o-eu
    api_version: 2024-10-21
"""


def test_an_azure_deployment_keeps_its_name_and_api_version() -> None:
    # Unquoted, YAML reads the version as a date: it is taken as the text written.
    model = parse_standalone_config(AZURE, source="c.yaml").models["gpt-4o"]
    assert (model.azure_deployment, model.api_version) == ("gpt4o-eu", "2024-10-21")
    assert model.upstream_model == "gpt-4o-2024-08-06"


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("api_version: 2024-10-21", "api_version: '2024&x=1'", 6, "models[0].api_version"),
        ("azure_deployment: gpt4o-eu", "azure_deployment: a/b", 5, "models[0].azure_deployment"),
        ("provider: azure", "provider: openai", 5, "only an azure deployment has one"),
    ],
)
def test_azure_fields_are_checked(old: str, new: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_standalone_config(AZURE.replace(old, new), source="c.yaml")
    assert f"c.yaml:{line}:" in str(err.value)
    assert fragment in str(err.value)


GROUPS = """\
accounts:
  - {name: openai-prod, provider: openai, base_host: api.openai.com, credential_ref: prod}
  - {name: openai-spare, provider: openai, base_host: api.openai.com, credential_ref: spare}
  - {name: claude, provider: anthropic, base_host: api.anthropic.com, credential_ref: claude}
fallback_groups:
  - name: openai-any
    accounts: [openai-prod, openai-spare]
models:
  - {name: gpt-4o-mini, provider: openai, route: openai-any}
"""


def test_fallback_groups_load_and_models_route_to_them() -> None:
    config = parse_standalone_config(GROUPS, source="c.yaml")
    (group,) = config.fallback_groups
    assert (group.name, group.accounts) == ("openai-any", ("openai-prod", "openai-spare"))
    assert (config.models["gpt-4o-mini"].route, config.models["gpt-4o-mini"].account) == (
        "openai-any",
        None,
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("[openai-prod, openai-spare]", "[openai-prod]", 7, "two or more distinct accounts"),
        ("[openai-prod, openai-spare]", "[openai-prod, ghost]", 7, "'ghost' (unknown"),
        ("[openai-prod, openai-spare]", "[openai-prod, claude]", 7, "of one provider"),
        ("  - name: openai-any", "  - name: claude", 6, "fallback_groups[0].name: 'claude'"),
        ("provider: openai, route", "provider: anthropic, route", 9, "serves openai"),
        ("credential_ref: spare}", "credential_ref: spare, enabled: false}", 7, "disabled"),
    ],
)
def test_fallback_group_mistakes_name_line_and_field(
    old: str, new: str, line: int, fragment: str
) -> None:
    text = GROUPS.replace(old, new, 1)
    assert text != GROUPS
    with pytest.raises(ConfigError) as info:
        parse_standalone_config(text, source="c.yaml")
    message = str(info.value)
    assert message.startswith(f"c.yaml:{line}:"), message
    assert fragment in message, message
