"""Provider endpoints the sidecar knows and cannot meter yet: always denied.

Denied whatever ``unknown_paths`` says (docs/providers.md, "Not metered"): letting one
through would spend money no usage record, budget or limit sees, the leak a gateway is
there to stop.

- **Realtime** (OpenAI and Azure ``/realtime``, and the WebRTC session and call routes
  that mint ephemeral keys a browser then uses against the provider directly) and any
  **WebSocket upgrade** (the Responses API over WebSocket, on any path): the usage
  arrives in frames the sidecar does not read.
- **Batch APIs** and the **file uploads** that feed them (OpenAI ``/v1/batches``,
  ``/v1/files``, ``/v1/uploads``; Azure's; Anthropic message batches; Gemini
  ``batchGenerateContent``, ``/batches`` and file uploads): the work runs later,
  outside any request the sidecar sees.

Matching is as liberal as metered matching (canonical path, any case, any method), so
no spelling of a denied endpoint passes as unknown-and-allowed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from policy_sidecar.providers.paths import canonical_path

__all__ = ["NOT_METERED", "NotMetered", "not_metered"]


@dataclass(frozen=True, slots=True)
class NotMetered:
    """A known endpoint the sidecar refuses, and why (the client sees ``reason``)."""

    pattern: re.Pattern[str]
    reason: str


_REALTIME = "the Realtime API is not metered by this gateway; it is denied"
_BATCH = "batch APIs are not metered by this gateway yet; they are denied"
_FILES = "file uploads (the input of batch APIs) are not metered by this gateway yet; denied"

_ANY = r"(/.*)?"
_V = r"(/v1|/v1beta|/v1alpha)"


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


NOT_METERED: tuple[NotMetered, ...] = (
    # OpenAI: /v1/realtime (WebSocket), /v1/realtime/sessions, /client_secrets, /calls.
    NotMetered(_re(rf"/v1/realtime{_ANY}"), _REALTIME),
    # Azure OpenAI: /openai/realtime and /openai/v1/realtime…
    NotMetered(_re(rf"/openai(/v1)?/realtime{_ANY}"), _REALTIME),
    NotMetered(_re(rf"/v1/batches{_ANY}"), _BATCH),
    NotMetered(_re(rf"/openai(/v1)?/batches{_ANY}"), _BATCH),
    NotMetered(_re(rf"/v1/messages/batches{_ANY}"), _BATCH),  # Anthropic
    NotMetered(_re(rf"{_V}/batches{_ANY}"), _BATCH),  # Gemini batch operations
    NotMetered(_re(rf"{_V}/models/[^/]+:(asyncBatchEmbedContent|batchGenerateContent)"), _BATCH),
    NotMetered(_re(rf"/v1/(files|uploads){_ANY}"), _FILES),  # OpenAI, Anthropic Files API
    NotMetered(_re(rf"/openai(/v1)?/files{_ANY}"), _FILES),
    NotMetered(_re(rf"(/upload)?{_V}/files{_ANY}"), _FILES),  # Gemini
)

_WEBSOCKET = "WebSocket connections are not metered by this gateway; they are denied"


def not_metered(path: str, headers: dict[str, str] | None = None) -> str | None:
    """Why this request is refused as not metered, or None. ``headers`` (lower-case
    names) are checked for a WebSocket upgrade, which is refused on every path."""
    if headers is not None and "websocket" in headers.get("upgrade", "").lower():
        return _WEBSOCKET
    canonical = canonical_path(path)
    if len(canonical) > _CACHED_LENGTH:
        return _reason(canonical)
    return _reason_cached(canonical)


def _reason(canonical: str) -> str | None:
    for route in NOT_METERED:
        if route.pattern.fullmatch(canonical):
            return route.reason
    return None


# Every request asks (eleven patterns, ~3 µs); a pure function of the path, remembered
# for the last paths seen, short ones only, as `canonical_path` is (a hit is ~0.1 µs).
_CACHED_LENGTH = 512
_reason_cached = functools.lru_cache(maxsize=4096)(_reason)
