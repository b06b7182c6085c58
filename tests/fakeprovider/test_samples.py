"""Sample bodies for the fake upstream parse back to the usage they were built with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.providers import Usage, default_registry

REGISTRY = default_registry()
USAGE = Usage(
    prompt_tokens=120, completion_tokens=40, total_tokens=160, cached_tokens=64, reasoning_tokens=16
)
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "stream_options": {"include_usage": True},
}

# (path, request body, stream, usage the provider can express)
CASES: list[tuple[str, dict[str, Any], bool, Usage]] = [
    ("/v1/chat/completions", CHAT, False, USAGE),
    ("/v1/chat/completions", CHAT, True, USAGE),
    (
        "/v1/completions",
        {"model": "m", "prompt": "x", "stream_options": {"include_usage": True}},
        False,
        Usage(120, 40, 160),
    ),
    (
        "/v1/completions",
        {"model": "m", "prompt": "x", "stream_options": {"include_usage": True}},
        True,
        Usage(120, 40, 160),
    ),
    (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": ["a", "b"]},
        False,
        Usage(120, 0, 120),
    ),
    ("/v1/responses", {"model": "o4-mini", "input": "x"}, False, USAGE),
    ("/v1/responses", {"model": "o4-mini", "input": "x"}, True, USAGE),
    ("/openai/deployments/d/chat/completions?api-version=2024-10-21", CHAT, False, USAGE),
    ("/openai/deployments/d/chat/completions?api-version=2024-10-21", CHAT, True, USAGE),
    (
        "/openai/deployments/e/embeddings?api-version=2024-10-21",
        {"input": "a"},
        False,
        Usage(120, 0, 120),
    ),
    (
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "messages": []},
        False,
        Usage(120, 40, 160, 64),
    ),
    ("/v1/messages", {"model": "claude-sonnet-4-5", "messages": []}, True, Usage(120, 40, 160, 64)),
    ("/v1/chat", {"message": "hi"}, False, Usage(120, 40, 160)),
    ("/v1/chat", {"message": "hi"}, True, Usage(120, 40, 160)),
    ("/v2/chat", {"model": "command-a-03-2025", "messages": []}, False, Usage(120, 40, 160)),
    ("/v2/chat", {"model": "command-a-03-2025", "messages": []}, True, Usage(120, 40, 160)),
    ("/v1/embed", {"texts": ["a", "b"]}, False, Usage(120, 0, 120)),
    ("/v2/embed", {"model": "embed-v4.0", "texts": ["a"]}, False, Usage(120, 0, 120)),
    ("/v1beta/models/gemini-2.5-flash:generateContent", {"contents": []}, False, USAGE),
    (
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": []},
        True,
        USAGE,
    ),
]


def _route(path: str) -> Any:
    found = REGISTRY.match("POST", path)
    assert found is not None
    return found


@pytest.mark.parametrize(("path", "request_body", "stream", "usage"), CASES)
def test_samples_round_trip(
    path: str, request_body: dict[str, Any], stream: bool, usage: Usage
) -> None:
    provider, route = _route(path)
    sample = build_response(route, request_body, usage, stream=stream)
    parser = provider.usage_parser(route, streaming=stream)
    for chunk in sample.chunks:
        parser.feed(chunk)
    assert parser.finish() == usage
    if not stream:
        assert sample.content_type == "application/json"
        json.loads(sample.body)
    elif sample.content_type == "text/event-stream":
        for chunk in sample.chunks:
            assert chunk.endswith(b"\n\n")
            data = chunk.decode().split("data: ", 1)[1].strip()
            if data != "[DONE]":
                json.loads(data)


def test_gemini_json_array_stream() -> None:
    provider, route = _route("/v1beta/models/gemini-2.0-flash:streamGenerateContent")
    sample = build_response(route, {"contents": []}, USAGE, gemini_sse=False)
    assert len(json.loads(sample.body)) > 1
    parser = provider.usage_parser(route, streaming=True)
    for chunk in sample.chunks:
        parser.feed(chunk)
    assert parser.finish() == USAGE


def test_openai_stream_without_include_usage_reports_none() -> None:
    provider, route = _route("/v1/chat/completions")
    sample = build_response(route, {"model": "m", "messages": [], "stream": True}, USAGE)
    assert b'"usage"' not in sample.body
    parser = provider.usage_parser(route, streaming=True)
    parser.feed(sample.body)
    assert parser.finish() is None


def test_stream_defaults_to_request_flag_and_text_is_streamed() -> None:
    _, route = _route("/v1/messages")
    sample = build_response(route, {"model": "c", "stream": True}, USAGE, text="one two three")
    assert sample.content_type == "text/event-stream"
    assert sample.body.count(b"text_delta") == 3


def test_unknown_operation_raises() -> None:
    from policy_sidecar.providers import Route

    with pytest.raises(ValueError, match="no sample"):
        build_response(Route("nope", "chat"), {}, USAGE)
