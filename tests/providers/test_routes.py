"""Provider and operation recognised from method and path; unknown paths give None."""

from __future__ import annotations

import pytest

from policy_sidecar.providers import Route, default_registry, is_streaming_response

REGISTRY = default_registry()


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/chat/completions", Route("openai", "chat")),
        ("/v1/chat/completions?foo=bar", Route("openai", "chat")),
        ("/v1/completions", Route("openai", "completions")),
        ("/v1/embeddings", Route("openai", "embeddings")),
        ("/v1/responses", Route("openai", "responses")),
        (
            "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
            Route("azure", "chat", model_from_path="my-gpt4o", api_version="2024-10-21"),
        ),
        (
            "/openai/deployments/inst/completions?api-version=2024-10-21",
            Route("azure", "completions", model_from_path="inst", api_version="2024-10-21"),
        ),
        (
            "/openai/deployments/emb3/embeddings?api-version=2024-02-01",
            Route("azure", "embeddings", model_from_path="emb3", api_version="2024-02-01"),
        ),
        ("/openai/v1/chat/completions", Route("azure", "chat")),
        (
            "/openai/responses?api-version=2025-04-01-preview",
            Route("azure", "responses", api_version="2025-04-01-preview"),
        ),
        ("/v1/messages", Route("anthropic", "messages")),
        ("/v1/chat", Route("cohere", "chat", api_version="v1")),
        ("/v2/chat", Route("cohere", "chat", api_version="v2")),
        ("/v1/embed", Route("cohere", "embed", api_version="v1")),
        ("/v2/embed", Route("cohere", "embed", api_version="v2")),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            Route("gemini", "generate", model_from_path="gemini-2.5-flash", api_version="v1beta"),
        ),
        (
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            Route(
                "gemini",
                "generate",
                model_from_path="gemini-2.5-pro",
                stream_from_path=True,
                api_version="v1beta",
            ),
        ),
        (
            "/v1/models/gemini-2.0-flash:generateContent",
            Route("gemini", "generate", model_from_path="gemini-2.0-flash", api_version="v1"),
        ),
        (
            "/v1beta/models/gemini-embedding-001:embedContent",
            Route("gemini", "embed", model_from_path="gemini-embedding-001", api_version="v1beta"),
        ),
        ("/v1/images/generations", Route("openai", "images")),
        ("/v1/images/edits", Route("openai", "image_edits")),
        ("/v1/audio/speech", Route("openai", "speech")),
        ("/v1/audio/transcriptions", Route("openai", "transcriptions")),
        ("/v1/audio/translations", Route("openai", "translations")),
        ("/v1/moderations", Route("openai", "moderations")),
        ("/v1/messages/count_tokens", Route("anthropic", "count_tokens")),
        ("/v2/rerank", Route("cohere", "rerank", api_version="v2")),
        ("/v1/rerank", Route("cohere", "rerank", api_version="v1")),
        (
            "/v1beta/models/gemini-2.5-flash:countTokens",
            Route(
                "gemini", "count_tokens", model_from_path="gemini-2.5-flash", api_version="v1beta"
            ),
        ),
        (
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            Route(
                "gemini",
                "batch_embed",
                model_from_path="gemini-embedding-001",
                api_version="v1beta",
            ),
        ),
    ],
)
def test_known_paths(path: str, route: Route) -> None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    assert found[1] == route
    assert found[0].name == route.provider


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/images/generations"),
        ("POST", "/v1/images/variations"),
        ("POST", "/v1/audio/voices"),
        ("POST", "/openai/deployments/x/images/generations"),
        ("POST", "/v3/chat"),
        ("POST", "/"),
        ("POST", ""),
    ],
)
def test_unknown_paths_give_none(method: str, path: str) -> None:
    assert REGISTRY.match(method, path) is None


GEMINI_STREAM = Route("gemini", "generate", model_from_path="m", stream_from_path=True)


@pytest.mark.parametrize(
    ("route", "content_type", "streaming"),
    [
        (Route("openai", "chat"), "text/event-stream; charset=utf-8", True),
        (Route("openai", "chat"), "application/json", False),
        (Route("cohere", "chat", api_version="v1"), "application/stream+json", True),
        (GEMINI_STREAM, "application/json; charset=UTF-8", True),
        (GEMINI_STREAM, "text/event-stream", True),
        (Route("gemini", "generate", model_from_path="m"), "application/json", False),
        (Route("anthropic", "messages"), None, False),
    ],
)
def test_is_streaming_response(route: Route, content_type: str | None, streaming: bool) -> None:
    assert is_streaming_response(route, content_type) is streaming
