"""Where callers put their API key, per provider convention."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

from policy_sidecar.providers.paths import QUERY_KEY, split_path

# Headers that may carry the caller's key; all are removed before the request goes
# upstream so the caller's key never reaches the provider.
KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
# Providers whose API takes the key as ``?key=`` (Gemini's REST examples do). On any
# other endpoint a ``?key=`` is refused: it would travel upstream in the URL.
QUERY_KEY_PROVIDERS = frozenset({"gemini"})


def repeated_key_header(names: Iterable[str]) -> str | None:
    """The first key header a request names more than once, if any: which of two keys
    identifies the caller is ambiguous. (Envoy joins a repeated ``authorization`` into
    one comma-separated value, which matches no key; other names come one by one.)"""
    seen: set[str] = set()
    for name in names:
        if name in KEY_HEADERS:
            if name in seen:
                return name
            seen.add(name)
    return None


def api_key_from(headers: Mapping[str, str], path: str, *, query_allowed: bool) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in KEY_HEADERS[1:]:
        value = headers.get(name)
        if value:
            return value.strip()
    if query_allowed:
        _, query = split_path(path)
        values = parse_qs(query).get(QUERY_KEY)
        if values:
            return values[0]
    return None
