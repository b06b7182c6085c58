"""The policy builder's form <-> `Policy` message (pure: no I/O).

Each policy type has its own fieldset; a field is posted as `<type>.<name>`, so the
same name (e.g. `window`) in two types never collides. Empty inputs are left out of
the config document, so the server's defaults and its "required" errors apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from google.protobuf import json_format

from policy_sidecar.admin.v1 import policies_pb2

__all__ = [
    "CONFIG_FIELDS",
    "POLICY_TYPES",
    "SCOPE",
    "form_of",
    "policy_from",
    "sample_from",
]

Kind = Literal["int", "float", "str", "list"]
SCOPE = ("org_id", "app_id", "environment", "model_pattern")
CONFIG_FIELDS: dict[str, tuple[tuple[str, Kind], ...]] = {
    "model_allowlist": (("models", "list"),),
    "request_size": (("max_bytes", "int"),),
    "rate_limit": (
        ("requests", "int"),
        ("window", "str"),
        ("key", "str"),
        ("fail_mode", "str"),
    ),
    "token_limit": (
        ("count", "str"),
        ("limit", "int"),
        ("limit_usd", "float"),
        ("window", "str"),
        ("key", "str"),
        ("fail_mode", "str"),
        ("output_reserve_ratio", "float"),
        ("output_reserve_cap", "int"),
        ("default_max_output", "int"),
    ),
    "custom_cel": (
        ("pre_check_expression", "str"),
        ("post_check_expression", "str"),
        ("message", "str"),
        ("penalty_seconds", "int"),
    ),
}
POLICY_TYPES = tuple(CONFIG_FIELDS)
MODES = {"enforce": policies_pb2.POLICY_MODE_ENFORCE, "shadow": policies_pb2.POLICY_MODE_SHADOW}
SAMPLE_INTS = ("request_size_bytes", "estimated_tokens")
RESPONSE_INTS = ("prompt_tokens", "completion_tokens", "cached_tokens", "latency_ms", "status_code")


def _value(kind: Kind, text: str) -> Any:
    """The typed value; text the type does not parse is sent as is, for the server to
    name the field and the problem."""
    if kind == "list":
        return [item.strip() for item in text.replace(",", "\n").splitlines() if item.strip()]
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return text
    return text


def config_from(policy_type: str, form: Mapping[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, kind in CONFIG_FIELDS.get(policy_type, ()):
        text = form.get(f"{policy_type}.{name}", "").strip()
        if text:
            config[name] = _value(kind, text)
    return config


def _int(form: Mapping[str, str], name: str) -> int:
    try:
        return int(form.get(name, "").strip() or 0)
    except ValueError:
        return 0


def policy_from(form: Mapping[str, str], *, policy_id: str = "") -> policies_pb2.Policy:
    policy_type = form.get("type", "").strip()
    policy = policies_pb2.Policy(
        id=policy_id,
        name=form.get("name", "").strip(),
        type=policy_type,
        mode=MODES.get(form.get("mode", ""), policies_pb2.POLICY_MODE_UNSPECIFIED),
        priority=_int(form, "priority"),
        enabled=form.get("enabled") == "on",
        version=_int(form, "version"),
    )
    for name in SCOPE:
        value = form.get(name, "").strip()
        if value:
            setattr(policy, name, value)
    policy.config.update(config_from(policy_type, form))
    return policy


def form_of(policy: policies_pb2.Policy) -> dict[str, str]:
    form = {
        "name": policy.name,
        "type": policy.type,
        "mode": "shadow" if policy.mode == policies_pb2.POLICY_MODE_SHADOW else "enforce",
        "priority": str(policy.priority),
        "enabled": "on" if policy.enabled else "",
        "version": str(policy.version),
    }
    for name in SCOPE:
        form[name] = getattr(policy, name) if policy.HasField(name) else ""
    config = json_format.MessageToDict(policy.config)
    for name, kind in CONFIG_FIELDS.get(policy.type, ()):
        if name not in config:
            continue
        value = config[name]
        if kind == "list":
            form[f"{policy.type}.{name}"] = "\n".join(str(v) for v in value)
        elif kind == "int" and isinstance(value, float) and value.is_integer():
            form[f"{policy.type}.{name}"] = str(int(value))
        else:
            form[f"{policy.type}.{name}"] = str(value)
    return form


def sample_from(form: Mapping[str, str]) -> policies_pb2.TestPolicyRequest:
    """The dry-run request: the sample request, an optional response, the counter value."""
    sample = policies_pb2.SampleRequest(
        model=form.get("sample.model", "").strip(),
        org_id=form.get("sample.org_id", "").strip(),
        app_id=form.get("sample.app_id", "").strip(),
        environment=form.get("sample.environment", "").strip(),
        provider=form.get("sample.provider", "").strip(),
        stream=form.get("sample.stream") == "on",
        **{name: _int(form, f"sample.{name}") for name in SAMPLE_INTS},
    )
    if form.get("sample.max_tokens", "").strip():
        sample.max_tokens = _int(form, "sample.max_tokens")
    request = policies_pb2.TestPolicyRequest(
        request=sample, counter_used=_int(form, "sample.counter_used")
    )
    if form.get("sample.with_response") == "on":
        response = policies_pb2.SampleResponse(
            **{name: _int(form, f"response.{name}") for name in RESPONSE_INTS}
        )
        response.total_tokens = response.prompt_tokens + response.completion_tokens
        request.response.CopyFrom(response)
    return request
