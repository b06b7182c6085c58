"""Validation of JSON documents (policy configs, per-environment settings) before
they are stored. The policy engine supplies a stricter `ConfigValidator`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ConfigValidator", "json_object", "string_labels"]

#: (type or environment, document) -> the normalised document; raises ValueError.
ConfigValidator = Callable[[str, Mapping[str, Any]], dict[str, Any]]


def json_object(_type: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """Accept any JSON object with string keys (the permissive default)."""
    if not isinstance(value, Mapping):
        raise ValueError("must be a JSON object")
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-serialisable: {exc}") from exc
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def string_labels(value: Mapping[str, str]) -> dict[str, str]:
    """Labels are a flat string -> string map, like Kubernetes labels."""
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise ValueError(f"label {k!r}: keys and values must be strings, keys non-empty")
        out[k] = v
    return out
