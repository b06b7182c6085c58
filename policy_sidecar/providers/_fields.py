"""Typed field access for request bodies: every error names the field by its JSON path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers.base import RequestError

# Token counts (max_tokens and kin) are 32-bit on every provider's wire; a larger value is
# no request a provider serves, and bounding it keeps reservations and metadata finite.
MAX_TOKEN_COUNT = 2**31 - 1
# Model names travel in metadata, counter keys and usage records: real ones are short.
MAX_MODEL_CHARS = 256

_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def wrong(path: str, expected: str, value: Any) -> RequestError:
    return RequestError(f"'{path}' must be {expected}, got {type_name(value)}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def req_str(body: Mapping[str, Any], key: str, path: str | None = None) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        if key not in body:
            raise RequestError(f"'{path or key}' is required")
        raise wrong(path or key, "a non-empty string", value)
    return value


def opt_str(body: Mapping[str, Any], key: str, path: str | None = None) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise wrong(path or key, "a string", value)


def _model_name(value: str, path: str) -> str:
    if len(value) > MAX_MODEL_CHARS:
        raise RequestError(f"'{path}' must be at most {MAX_MODEL_CHARS} characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate from a \u escape
            raise RequestError(f"'{path}' must be valid Unicode text") from None
    return value


def req_model(body: Mapping[str, Any], key: str = "model") -> str:
    """The model name: a non-empty string of valid text, at most ``MAX_MODEL_CHARS``."""
    return _model_name(req_str(body, key), key)


def opt_model(body: Mapping[str, Any], key: str = "model") -> str | None:
    value = opt_str(body, key)
    return None if value is None else _model_name(value, key)


def opt_bool(body: Mapping[str, Any], key: str, path: str | None = None) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise wrong(path or key, "a boolean", value)
    return value


def opt_int(body: Mapping[str, Any], key: str, path: str | None = None) -> int | None:
    """A token count: an integer from 0 to ``MAX_TOKEN_COUNT``, or absent/null."""
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value) or value < 0:
        raise wrong(path or key, "a non-negative integer", value)
    if value > MAX_TOKEN_COUNT:
        raise RequestError(f"'{path or key}' must be at most {MAX_TOKEN_COUNT}")
    result: int = value
    return result


def first_int(body: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` present (non-null), validated as a non-negative integer."""
    for key in keys:
        if body.get(key) is not None:
            return opt_int(body, key)
    return None


def opt_list(body: Mapping[str, Any], key: str, path: str | None = None) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise wrong(path or key, "an array", value)
    return value


def req_list(body: Mapping[str, Any], key: str, path: str | None = None) -> list[Any]:
    if body.get(key) is None:
        raise RequestError(f"'{path or key}' is required")
    return opt_list(body, key, path)


def obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise wrong(path, "an object", value)
    return value


def compact_json(value: Any) -> str:
    """Tool schemas and structured arguments are counted as the compact JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
