"""How the sidecar reads a request path: one canonical spelling, and the free routes.

Envoy normalises first (``normalize_path``: dot segments and percent-encoded unreserved
characters; ``merge_slashes``; an escaped ``/`` or ``\\`` is refused), so the sidecar
sees the path that goes upstream. A provider may still route other spellings of the same
endpoint alike: other percent-escapes (``%3A`` for Gemini's ``:``), ``;`` parameters, a
trailing slash, upper case. Metering must never depend on the spelling, so provider
matching is liberal: it compares the canonical path, case-insensitively. Whether the
provider then serves that spelling is the provider's business; the request was judged.

Free routes (no tokens, no policy beyond the key check) are the opposite: they must be
spelled exactly, so no spelling of a metered endpoint can pass as one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

# The query parameter Gemini's REST API takes the key in.
QUERY_KEY = "key"


def split_path(raw: str) -> tuple[str, str]:
    """``(path, query)`` of a request target; a fragment (never sent by clients) is dropped."""
    path, _, query = raw.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


def canonical_path(raw: str) -> str:
    """The path without query, ``;`` parameters, percent-escapes, empty and dot segments
    or a trailing slash; case is kept (model names in paths are case-sensitive).

    Pure, so remembered for the last paths seen up to ``_CACHED_PATH_LENGTH`` characters
    (the request path asks two to three times a request, ~2 µs each; a hit is ~0.1 µs):
    the cache holds at most ``_CACHED_PATHS`` short strings whatever the clients send."""
    if len(raw) > _CACHED_PATH_LENGTH:
        return _canonical_path(raw)
    return _canonical_cached(raw)


def _canonical_path(raw: str) -> str:
    path, _ = split_path(raw)
    segments: list[str] = []
    for part in path.split("/"):
        # ";params" are cut before decoding: an escaped %3B is data, not a parameter.
        segment = unquote(part.partition(";")[0], errors="replace")
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


_CACHED_PATH_LENGTH = 512
_CACHED_PATHS = 4096
_canonical_cached = functools.lru_cache(maxsize=_CACHED_PATHS)(_canonical_path)


def canonical_target(raw: str) -> str:
    """``canonical_path`` with the original query kept, as the providers' ``match`` takes."""
    _, query = split_path(raw)
    path = canonical_path(raw)
    return f"{path}?{query}" if query else path


def has_query_key(raw: str) -> bool:
    _, query = split_path(raw)
    return any(_param_name(part) == QUERY_KEY for part in query.split("&") if part)


def without_query_key(raw: str) -> str:
    """The request target with every ``key`` parameter removed, the rest as sent."""
    path, query = split_path(raw)
    kept = [part for part in query.split("&") if part and _param_name(part) != QUERY_KEY]
    return f"{path}?{'&'.join(kept)}" if kept else path


def _param_name(part: str) -> str:
    return unquote_plus(part.partition("=")[0], errors="replace")


@dataclass(frozen=True, slots=True)
class FreeRoute:
    """An endpoint that costs nothing: allowed with a valid key, never metered."""

    method: str
    pattern: re.Pattern[str]
    # The provider whose API this is, when only one has it (decides where ?key= is taken).
    provider: str | None = None


_MODEL_ID = r"[A-Za-z0-9._-]+"

# Model listings and model lookups of every supported provider's API.
FREE_ROUTES: tuple[FreeRoute, ...] = (
    FreeRoute("GET", re.compile(rf"/v1/models(/{_MODEL_ID})?")),  # OpenAI, Anthropic, Gemini
    FreeRoute("GET", re.compile(rf"/v1beta/models(/{_MODEL_ID})?"), "gemini"),
    FreeRoute("GET", re.compile(r"/openai/(v1/)?models")),  # Azure OpenAI
    FreeRoute("GET", re.compile(rf"/v2/models(/{_MODEL_ID})?"), "cohere"),
)


def free_route(method: str, raw: str) -> FreeRoute | None:
    """The free route this request is, compared exactly as received (no decoding)."""
    path, _ = split_path(raw)
    for route in FREE_ROUTES:
        if method == route.method and route.pattern.fullmatch(path):
            return route
    return None
