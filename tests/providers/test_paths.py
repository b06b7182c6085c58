"""Canonical paths, free routes and the ?key= parameter, as tables."""

from __future__ import annotations

import pytest

from policy_sidecar.providers import Route, default_registry, paths
from policy_sidecar.providers.paths import (
    canonical_path,
    canonical_target,
    free_route,
    has_query_key,
    without_query_key,
)

REGISTRY = default_registry()
CHAT = Route("openai", "chat")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/chat/completions?stream=true", "/v1/chat/completions"),
        ("/v1//chat///completions", "/v1/chat/completions"),
        ("/v1/chat/completions/", "/v1/chat/completions"),
        ("/v1/chat/completions;x=1", "/v1/chat/completions"),
        ("/v1;a=b/chat;c/completions;d", "/v1/chat/completions"),
        ("/v1/chat/%63ompletions", "/v1/chat/completions"),
        ("/v1/./chat/x/../completions", "/v1/chat/completions"),
        ("/../../v1/chat/completions", "/v1/chat/completions"),
        ("/V1/Chat/Completions", "/V1/Chat/Completions"),  # case kept; matching folds it
        ("/v1beta/models/m%3AgenerateContent", "/v1beta/models/m:generateContent"),
        ("/v1/a%3Bb", "/v1/a;b"),  # an escaped ';' is data, not a parameter
        ("/v1/chat/completions#frag", "/v1/chat/completions"),
        ("", "/"),
    ],
)  # fmt: skip
def test_canonical_path(raw: str, expected: str) -> None:
    assert canonical_path(raw) == expected
    assert canonical_path(raw) == expected  # the remembered answer too
    assert paths._canonical_path(raw) == expected
    long = "/." * 400 + raw  # past the cached length: computed each time, alike
    assert len(long) > paths._CACHED_PATH_LENGTH
    assert canonical_path(long) == expected


def test_canonical_path_cache_is_bounded() -> None:
    for i in range(paths._CACHED_PATHS + 10):
        assert canonical_path(f"/v1/models/m{i}:generateContent") == (
            f"/v1/models/m{i}:generateContent"
        )
    assert paths._canonical_cached.cache_info().currsize <= paths._CACHED_PATHS


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1//chat/completions", CHAT),
        ("/V1/chat/completions", CHAT),
        ("/v1/CHAT/COMPLETIONS", CHAT),
        ("/v1/chat/completions/", CHAT),
        ("/v1/chat/completions;x=1", CHAT),
        ("/v1/chat/%63ompletions", CHAT),
        ("/v1/chat/completions%3Bx", None),  # the provider would see "completions;x"
        ("/v1/Messages", Route("anthropic", "messages")),
        ("/V2/chat", Route("cohere", "chat", api_version="v2")),
        (
            "/v1beta/models/gemini-2.0-flash%3AgenerateContent",
            Route("gemini", "generate", model_from_path="gemini-2.0-flash", api_version="v1beta"),
        ),
        (
            "/V1BETA/models/Gemini-X:StreamGenerateContent/?alt=sse",
            Route(
                "gemini",
                "generate",
                model_from_path="Gemini-X",
                stream_from_path=True,
                api_version="v1beta",
            ),
        ),
        (
            "/OpenAI/Deployments/My-Dep/Chat/Completions?api-version=1",
            Route("azure", "chat", model_from_path="My-Dep", api_version="1"),
        ),
        ("/OPENAI/v1/embeddings/", Route("azure", "embeddings")),
    ],
)
def test_every_spelling_of_a_metered_endpoint_is_metered(path: str, route: Route | None) -> None:
    found = REGISTRY.match("POST", path)
    assert (found[1] if found else None) == route


@pytest.mark.parametrize(
    ("method", "path", "free"),
    [
        ("GET", "/v1/models", True),
        ("GET", "/v1/models/gpt-4o-mini", True),
        ("GET", "/v1/models?limit=5", True),
        ("GET", "/v1beta/models", True),
        ("GET", "/v1beta/models/gemini-2.0-flash", True),
        ("GET", "/openai/models", True),
        ("GET", "/openai/v1/models", True),
        ("GET", "/v2/models", True),
        # Free routes are spelled exactly: no variant, no other method, no operation.
        ("POST", "/v1/models", False),
        ("GET", "/v1/models/", False),
        ("GET", "/V1/models", False),
        ("GET", "/v1/models;x", False),
        ("GET", "/v1/models/%67pt", False),
        ("GET", "/v1beta/models/gemini-2.0-flash:generateContent", False),
        ("GET", "/v1beta/models/gemini%3AgenerateContent", False),
        ("GET", "/v1/models/a/b", False),
        ("GET", "/v1/files", False),
        ("GET", "/v1/batches", False),
    ],
)
def test_free_routes(method: str, path: str, free: bool) -> None:
    assert (free_route(method, path) is not None) is free


@pytest.mark.parametrize(
    ("raw", "present", "stripped"),
    [
        ("/p", False, "/p"),
        ("/p?alt=sse", False, "/p?alt=sse"),
        ("/p?key=abc", True, "/p"),
        ("/p?alt=sse&key=abc", True, "/p?alt=sse"),
        ("/p?key=a&alt=sse&key=b", True, "/p?alt=sse"),
        ("/p?%6Bey=abc&x=%20", True, "/p?x=%20"),  # an escaped name is still "key"
        ("/p?key", True, "/p"),
        ("/p?keys=1&monkey=2", False, "/p?keys=1&monkey=2"),
        ("/p?%FF=1&k%FFey=2", False, "/p?%FF=1&k%FFey=2"),  # invalid UTF-8: replaced, no error
    ],
)
def test_query_key(raw: str, present: bool, stripped: str) -> None:
    assert has_query_key(raw) is present
    assert without_query_key(raw) == stripped


def test_canonical_target_keeps_the_query_and_drops_fragments_and_bad_escapes() -> None:
    assert canonical_target("/v1//x/") == "/v1/x"
    assert canonical_target("/v1/x?") == "/v1/x"
    assert canonical_target("/v1/x/?a=1&b#frag") == "/v1/x?a=1&b"
    assert canonical_target("/v1/%FF%3A?k=%FF") == "/v1/\ufffd:?k=%FF"
