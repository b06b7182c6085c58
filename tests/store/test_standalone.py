"""Standalone YAML: valid files load; each kind of mistake names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_sidecar.identity.resolver import hash_api_key
from policy_sidecar.policy.definition import ModelAllowlistConfig, RequestSizeConfig
from policy_sidecar.store.standalone import (
    ConfigError,
    StandaloneIdentityResolver,
    load_standalone_config,
    parse_standalone_config,
)

GOOD = """\
version: 1
applications:
  - id: a1
    org_id: o1
    keys:
      - environment: dev
        key: ps-plain-key-0123456789
      - environment: prod
        key_sha256: {digest}
models:
  - name: m1
    provider: openai
    input_price_per_mtok: 1.5
policies:
  - id: p1
    name: allow
    type: model_allowlist
    config: {{models: [m1, "gpt-*"]}}
  - id: p2
    name: size
    type: request_size
    mode: shadow
    scope: {{app_id: a1, environment: dev}}
    config: {{max_bytes: 10}}
"""


def good_text() -> str:
    return GOOD.format(digest=hash_api_key("ps-hashed-key-0123456789"))


async def test_valid_file_loads_into_typed_objects() -> None:
    config = parse_standalone_config(good_text(), source="c.yaml")
    resolver = StandaloneIdentityResolver(config.keys)
    plain = await resolver.resolve("ps-plain-key-0123456789")
    hashed = await resolver.resolve("ps-hashed-key-0123456789")
    assert plain is not None and (plain.app_id, plain.environment) == ("a1", "dev")
    assert hashed is not None and hashed.environment == "prod"
    assert await resolver.resolve("ps-unknown-key-000000") is None
    assert config.models["m1"].upstream_model == "m1"
    p1, p2 = config.policies
    assert isinstance(p1.config, ModelAllowlistConfig) and p1.config.models == ("m1", "gpt-*")
    assert isinstance(p2.config, RequestSizeConfig) and p2.mode == "shadow"
    assert p2.scope.app_id == "a1"


def test_empty_file_is_an_empty_config() -> None:
    config = parse_standalone_config("", source="e.yaml")
    assert config.policies == () and dict(config.keys) == {}


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("version: 1", "version: 2", 1, "version: Input should be 1"),
        (
            "    org_id: o1",
            "    org_id: o1\n    budget: 5",
            5,
            "applications[0].budget: Extra inputs",
        ),
        ("        key: ps-plain-key-0123456789", "        key: short", 7, "at least 16"),
        ("        key_sha256: ", "        key_sha256: zz", 9, "key_sha256"),
        ("    provider: openai", "    provider: acme", 12, "models[0].provider"),
        (
            "    input_price_per_mtok: 1.5",
            "    input_price_per_mtok: -1",
            13,
            "greater than or equal",
        ),
        ("    type: model_allowlist", "    type: budget", 17, "policies[0].type"),
        ('{models: [m1, "gpt-*"]}', "{models: []}", 18, "policies[0].config.models"),
        ("{max_bytes: 10}", "{max_bytes: '10'}", 24, "policies[1].config.max_bytes"),
        ("{max_bytes: 10}", "{max_bytes: 10, unit: kb}", 24, "config.unit: Extra inputs"),
        ("    mode: shadow", "    mode: loud", 22, "policies[1].mode"),
        ("  - id: p2", "  - id: p1", 19, "duplicate policy id 'p1'"),
    ],
)
def test_each_mistake_names_line_and_field(old: str, new: str, line: int, fragment: str) -> None:
    text = good_text()
    assert old in text
    with pytest.raises(ConfigError) as info:
        parse_standalone_config(text.replace(old, new, 1), source="bad.yaml")
    message = str(info.value)
    assert message.startswith(f"bad.yaml:{line}: "), message
    assert fragment in message, message


def test_key_needs_exactly_one_form() -> None:
    text = good_text().replace("        key: ps-plain-key-0123456789", "        id: k")
    with pytest.raises(
        ConfigError, match=r"bad.yaml:6: applications\[0\].keys\[0\]: give exactly one"
    ):
        parse_standalone_config(text, source="bad.yaml")


def test_same_key_twice_is_refused() -> None:
    text = good_text().replace(
        "        key_sha256: ", "        key: ps-plain-key-0123456789\n        x: "
    )
    with pytest.raises(ConfigError):
        parse_standalone_config(text, source="bad.yaml")


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^bad.yaml:4: invalid YAML"):
        parse_standalone_config("version: 1\napplications:\n  - id: [a\n", source="bad.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_standalone_config(tmp_path / "nope.yaml")


def test_shipped_example_is_valid() -> None:
    from importlib import resources

    text = resources.files("policy_sidecar").joinpath("examples/standalone.yaml").read_text()
    config = parse_standalone_config(text, source="standalone.yaml")
    assert {p.type for p in config.policies} == {"model_allowlist", "request_size"}
