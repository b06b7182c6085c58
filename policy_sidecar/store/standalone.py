"""The standalone store: applications, keys, models and policies from one YAML file.

Validated once at load; any error stops start-up with the file, the line, the path of
the offending field and what is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from policy_sidecar.catalog.account_rules import account_problems, fallback_group_problems
from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.catalog.deployments import ModelDeployment, azure_problems
from policy_sidecar.identity.resolver import Identity, hash_api_key
from policy_sidecar.policy.definition import CONFIG_TYPES, PolicyConfig, PolicyDefinition, Scope
from policy_sidecar.store.yamlpos import Path as YamlPath
from policy_sidecar.store.yamlpos import line_for, load_with_lines

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Key(_Strict):
    id: Name | None = None
    environment: Name = "default"
    key: Annotated[str, Field(min_length=16)] | None = None
    key_sha256: Annotated[str, Field(pattern=_SHA256.pattern)] | None = None


class _App(_Strict):
    id: Name
    org_id: Name
    name: Name | None = None
    description: str = ""
    keys: list[_Key] = []


_Provider = Literal["openai", "azure", "anthropic", "cohere", "gemini"]


class _Account(_Strict):
    name: Name
    provider: _Provider
    base_host: Name
    credential_ref: Name
    port: Annotated[int, Field(ge=1, le=65535)] = 443
    ca_file: Name | None = None
    address: Name | None = None
    tokens_per_minute: Annotated[int, Field(gt=0)] | None = None
    requests_per_minute: Annotated[int, Field(gt=0)] | None = None
    enabled: bool = True


def _date_text(value: Any) -> Any:
    """YAML reads an unquoted ``2024-10-21`` as a date: take it as the text it was."""
    return value.isoformat() if isinstance(value, date) else value


_ApiVersion = Annotated[str, BeforeValidator(_date_text), Field(min_length=1, max_length=40)]
Price = Annotated[float, Field(ge=0)]


class _Model(_Strict):
    name: Name
    provider: _Provider
    upstream_model: Name | None = None
    route: Name | None = None
    # A provider account (accounts[].name): routed to its cluster, under its quotas.
    account: Name | None = None
    context_window: Annotated[int, Field(gt=0)] | None = None
    # Omitted or null: unpriced (refused or reported by ``unpriced``); 0: free.
    input_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    cached_input_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    output_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    # Routes of another unit (docs/providers.md, "Units"): USD per image, character,
    # second or search unit; images by "size/quality" (e.g. "1024x1024/hd").
    unit_price_usd: Annotated[float, Field(ge=0)] | None = None
    image_prices: dict[Annotated[str, Field(min_length=3, max_length=64)], Price] | None = None
    # Omitted: the input price.
    cache_write_5m_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    cache_write_1h_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    # Above this many prompt tokens the request is priced at the long-context prices.
    long_context_threshold_tokens: Annotated[int, Field(gt=0)] | None = None
    long_context_input_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    long_context_cached_input_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    long_context_output_price_per_mtok: Annotated[float, Field(ge=0)] | None = None
    enabled: bool = True
    # Azure only: the deployment's name at Azure, and its deployment path's api-version.
    azure_deployment: Name | None = None
    api_version: _ApiVersion | None = None


class _FallbackGroup(_Strict):
    name: Name
    # Account names (accounts[].name), first choice first.
    accounts: list[Name]


class _Scope(_Strict):
    org_id: Name | None = None
    app_id: Name | None = None
    environment: Name | None = None
    model_pattern: Name | None = None


class _Policy(_Strict):
    id: Name
    name: Name
    type: Literal["model_allowlist", "request_size", "rate_limit", "token_limit", "custom_cel"]
    config: dict[str, Any]
    scope: _Scope = _Scope()
    mode: Literal["enforce", "shadow"] = "enforce"
    priority: int = 100
    enabled: bool = True


class _File(_Strict):
    version: Literal[1] = 1
    unknown_paths: Literal["deny", "passthrough"] = "deny"
    unpriced: Literal["deny", "allow_and_report"] = "deny"
    applications: list[_App] = []
    accounts: list[_Account] = []
    fallback_groups: list[_FallbackGroup] = []
    models: list[_Model] = []
    policies: list[_Policy] = []


class ConfigError(Exception):
    """A configuration file is invalid. The message names file, line, field and problem."""


@dataclass(frozen=True, slots=True)
class StandaloneConfig:
    source: str
    unknown_paths: Literal["deny", "passthrough"]
    keys: Mapping[str, Identity]  # by key hash
    models: Mapping[str, ModelDeployment]
    policies: tuple[PolicyDefinition, ...]
    accounts: Mapping[str, ProviderAccount] = field(default_factory=dict)
    unpriced: Literal["deny", "allow_and_report"] = "deny"
    # Written into the CDS file with the accounts' clusters (POLICY_SIDECAR_CDS_PATH).
    fallback_groups: tuple[FallbackGroup, ...] = ()


def load_standalone_config(path: str | Path) -> StandaloneConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_standalone_config(text, source=str(path))


def parse_standalone_config(text: str, *, source: str) -> StandaloneConfig:
    try:
        data, lines = load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}

    def fail(loc: YamlPath, message: str) -> ConfigError:
        line = line_for(lines, loc)
        where = f"{source}:{line}" if line is not None else source
        dotted = _dotted(loc) or "(top level)"
        return ConfigError(f"{where}: {dotted}: {message}")

    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(tuple(first["loc"]), first["msg"]) from exc

    keys: dict[str, Identity] = {}
    app_ids: set[str] = set()
    for a, app in enumerate(raw.applications):
        if app.id in app_ids:
            raise fail(("applications", a, "id"), f"duplicate application id '{app.id}'")
        app_ids.add(app.id)
        for k, key in enumerate(app.keys):
            loc: YamlPath = ("applications", a, "keys", k)
            if (key.key is None) == (key.key_sha256 is None):
                raise fail(loc, "give exactly one of 'key' or 'key_sha256'")
            digest = key.key_sha256 or hash_api_key(key.key or "")
            if digest in keys:
                raise fail(loc, "this key is already declared")
            key_id = key.id or f"{app.id}/{key.environment}/{digest[:8]}"
            keys[digest] = Identity(app.id, app.org_id, key.environment, key_id)

    accounts: dict[str, ProviderAccount] = {}
    for i, acc in enumerate(raw.accounts):
        if acc.name in accounts:
            raise fail(("accounts", i, "name"), f"duplicate account '{acc.name}'")
        for field_name, problem in account_problems(
            name=acc.name,
            base_host=acc.base_host,
            credential_ref=acc.credential_ref,
            ca_file=acc.ca_file,
        ):
            raise fail(("accounts", i, field_name), problem)
        accounts[acc.name] = ProviderAccount(**acc.model_dump())

    groups: dict[str, FallbackGroup] = {}
    for g, grp in enumerate(raw.fallback_groups):
        if grp.name in groups:
            raise fail(("fallback_groups", g, "name"), f"duplicate fallback group '{grp.name}'")
        for field_name, problem in fallback_group_problems(grp.name, grp.accounts, accounts):
            raise fail(("fallback_groups", g, field_name), problem)
        groups[grp.name] = FallbackGroup(grp.name, tuple(grp.accounts))

    models: dict[str, ModelDeployment] = {}
    for m, model in enumerate(raw.models):
        if model.name in models:
            raise fail(("models", m, "name"), f"duplicate model '{model.name}'")
        route = model.route
        if model.account is not None:
            account = accounts.get(model.account)
            if account is None:
                known = ", ".join(sorted(accounts)) or "none declared"
                raise fail(("models", m, "account"), f"unknown account '{model.account}' ({known})")
            if model.route is not None:
                raise fail(("models", m, "route"), "give either 'route' or 'account', not both")
            if account.provider != model.provider:
                raise fail(
                    ("models", m, "account"),
                    f"account '{account.name}' is a {account.provider} account,"
                    f" not {model.provider}",
                )
            route = account.cluster
        elif route in groups:
            group_provider = accounts[groups[route].accounts[0]].provider
            if group_provider != model.provider:
                raise fail(
                    ("models", m, "route"),
                    f"fallback group '{route}' serves {group_provider}, not {model.provider}",
                )
        for field_name, problem in azure_problems(
            model.provider, model.azure_deployment, model.api_version
        ):
            raise fail(("models", m, field_name), problem)
        models[model.name] = ModelDeployment(
            name=model.name,
            provider=model.provider,
            upstream_model=model.upstream_model or model.name,
            route=route,
            account=model.account,
            context_window=model.context_window,
            input_price_per_mtok=model.input_price_per_mtok,
            cached_input_price_per_mtok=model.cached_input_price_per_mtok,
            output_price_per_mtok=model.output_price_per_mtok,
            unit_price_usd=model.unit_price_usd,
            image_prices=tuple(sorted((model.image_prices or {}).items())),
            cache_write_5m_price_per_mtok=model.cache_write_5m_price_per_mtok,
            cache_write_1h_price_per_mtok=model.cache_write_1h_price_per_mtok,
            long_context_threshold_tokens=model.long_context_threshold_tokens,
            long_context_input_price_per_mtok=model.long_context_input_price_per_mtok,
            long_context_cached_input_price_per_mtok=model.long_context_cached_input_price_per_mtok,
            long_context_output_price_per_mtok=model.long_context_output_price_per_mtok,
            enabled=model.enabled,
            azure_deployment=model.azure_deployment,
            api_version=model.api_version,
        )

    policies: list[PolicyDefinition] = []
    policy_ids: set[str] = set()
    for p, pol in enumerate(raw.policies):
        if pol.id in policy_ids:
            raise fail(("policies", p, "id"), f"duplicate policy id '{pol.id}'")
        policy_ids.add(pol.id)
        try:
            config = CONFIG_TYPES[pol.type].model_validate(pol.config)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise fail(("policies", p, "config", *first["loc"]), first["msg"]) from exc
        policies.append(
            PolicyDefinition(
                id=pol.id,
                name=pol.name,
                type=pol.type,
                config=_as_policy_config(config),
                scope=Scope(**pol.scope.model_dump()),
                mode=pol.mode,
                priority=pol.priority,
                enabled=pol.enabled,
            )
        )
    return StandaloneConfig(
        source=source,
        unknown_paths=raw.unknown_paths,
        unpriced=raw.unpriced,
        keys=keys,
        models=models,
        policies=tuple(policies),
        accounts=accounts,
        fallback_groups=tuple(groups.values()),
    )


def _as_policy_config(config: BaseModel) -> PolicyConfig:
    return config  # type: ignore[return-value]  # CONFIG_TYPES only holds PolicyConfig types


def _dotted(loc: YamlPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class StandaloneIdentityResolver:
    """Resolves keys from the loaded file: one dictionary lookup."""

    def __init__(self, keys: Mapping[str, Identity]) -> None:
        self._keys = keys

    async def resolve(self, api_key: str) -> Identity | None:
        return self._keys.get(hash_api_key(api_key))
