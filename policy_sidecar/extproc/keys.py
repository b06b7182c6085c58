"""Where callers put their API key, per provider convention."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

# Headers that may carry the caller's key; all are removed before the request goes
# upstream so the caller's key never reaches the provider.
KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def api_key_from(headers: Mapping[str, str], path: str) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in KEY_HEADERS[1:]:
        value = headers.get(name)
        if value:
            return value.strip()
    # Gemini's REST examples pass the key as ?key=...
    _, _, query = path.partition("?")
    if query:
        values = parse_qs(query).get("key")
        if values:
            return values[0]
    return None
