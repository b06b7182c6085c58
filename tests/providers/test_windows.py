"""Usage from a body known only by its head and tail, the tail cut at every offset.

Envoy's capture keeps the first and last bytes of a response (docs/envoy.md, "Usage
capture"); the tail may start inside an SSE event, a stream line or a JSON member. For
every provider's sample, JSON and stream, and every cut: the parser never raises, finds
the full usage whenever the tail holds the usage-bearing event (or member) whole, and
otherwise reports nothing it did not read whole (no number cut in two).
"""

from __future__ import annotations

from typing import Any

import pytest

from policy_sidecar.fakeprovider.samples import SampleResponse, build_response
from policy_sidecar.providers import Route, Usage, default_registry
from policy_sidecar.providers.base import is_streaming_response
from policy_sidecar.providers.window import after_first_event, through_last_event

REGISTRY = default_registry()
# Many digits: a number cut in two would show.
USAGE = Usage(prompt_tokens=123456, completion_tokens=234567, total_tokens=358023)
TEXT = " ".join(f"w{i}" for i in range(30))
HEAD = 400  # holds Anthropic's message_start whole
# The members usage hangs under, by provider; and the fields in them.
MEMBERS = (b'"usage"', b'"usageMetadata"', b'"meta"')
KEYS = (*MEMBERS, b'"input_tokens"', b'"prompt_tokens"')

_CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
_STREAM: dict[str, Any] = {**_CHAT, "stream": True, "stream_options": {"include_usage": True}}
CASES: list[tuple[str, Route, dict[str, Any], dict[str, Any]]] = [
    ("openai-chat-json", Route("openai", "chat"), _CHAT, {}),
    ("openai-chat-sse", Route("openai", "chat"), _STREAM, {}),
    ("openai-completions-sse", Route("openai", "completions"), {**_STREAM, "prompt": "x"}, {}),
    ("openai-responses-json", Route("openai", "responses"), {"model": "m", "input": "x"}, {}),
    (
        "openai-responses-sse",
        Route("openai", "responses"),
        {"model": "m", "input": "x", "stream": True},
        {},
    ),
    ("azure-chat-sse", Route("azure", "chat"), _STREAM, {}),
    ("anthropic-json", Route("anthropic", "messages"), {**_CHAT, "max_tokens": 9}, {}),
    (
        "anthropic-sse",
        Route("anthropic", "messages"),
        {**_CHAT, "max_tokens": 9, "stream": True},
        {},
    ),
    ("cohere-v2-json", Route("cohere", "chat", api_version="v2"), _CHAT, {}),
    ("cohere-v2-sse", Route("cohere", "chat", api_version="v2"), {**_CHAT, "stream": True}, {}),
    (
        "cohere-v1-ndjson",
        Route("cohere", "chat", api_version="v1"),
        {"message": "hi", "stream": True},
        {},
    ),
    ("gemini-json", Route("gemini", "generate", model_from_path="g"), {}, {}),
    (
        "gemini-sse",
        Route("gemini", "stream", model_from_path="g", stream_from_path=True),
        {},
        {"gemini_sse": True},
    ),
    (
        "gemini-json-array",
        Route("gemini", "stream", model_from_path="g", stream_from_path=True),
        {},
        {"gemini_sse": False},
    ),
]


def _sample(route: Route, request: dict[str, Any], extra: dict[str, Any]) -> SampleResponse:
    return build_response(route, request, USAGE, text=TEXT, **extra)


def _parse(route: Route, streaming: bool, head: bytes, tail: bytes | None) -> Usage | None:
    parser = REGISTRY.get(route.provider).usage_parser(route, streaming=streaming)
    if tail is None:
        parser.feed(head)
    else:
        parser.feed_window(head, tail)
    return parser.finish()


def _framed(sample: SampleResponse, route: Route) -> str:
    if "event-stream" in sample.content_type:
        return "sse"
    if route.api_version == "v1" and b"\n" in sample.body.strip():
        return "lines"
    return "json"


def _last_trustworthy_start(body: bytes, framing: str) -> int:
    """The last cut offset at which the tail still holds the usage whole."""
    if framing == "json":
        return max(body.rfind(k) for k in MEMBERS)
    key_at = max(body.rfind(k) for k in KEYS)
    assert key_at > 0
    sep = b"\n\n" if framing == "sse" else b"\n"
    # The tail's first boundary must come before the usage unit starts: the cut
    # must leave the boundary ending the previous unit whole.
    previous_end = body.rfind(sep, 0, key_at)
    assert previous_end >= 0
    return previous_end


@pytest.mark.parametrize(("name", "route", "request_", "extra"), CASES, ids=[c[0] for c in CASES])
def test_the_tail_is_trusted_from_its_first_whole_unit(
    name: str, route: Route, request_: dict[str, Any], extra: dict[str, Any]
) -> None:
    sample = _sample(route, request_, extra)
    streaming = is_streaming_response(route, sample.content_type) or "stream" in name
    body = sample.body
    expected = _parse(route, streaming, body, None)
    assert expected is not None
    size = min(HEAD, len(body) // 3)  # a gap between head and tail for every cut
    framing = _framed(sample, route)
    trusted_until = _last_trustworthy_start(body, framing)
    head = body[:size]
    head_only = _parse(route, streaming, head, b"")
    for cut in range(size, len(body) + 1):
        got = _parse(route, streaming, head, body[cut:])
        if cut <= trusted_until:
            assert got == expected, f"cut at {cut}"
        else:
            # Only what was read whole: what the head says (Anthropic's message_start),
            # or nothing; never a number cut in two.
            assert got in (None, head_only, expected), f"cut at {cut}"


def test_event_boundaries() -> None:
    assert through_last_event(b"data: a\n\ndata: b") == b"data: a\n\n"
    assert through_last_event(b"data: a\r\n\r\ndata: b\r\n") == b"data: a\r\n\r\n"
    assert through_last_event(b"data: a") == b""
    assert after_first_event(b'ta: {"x": 1}\n\ndata: b\n\n') == b"data: b\n\n"
    assert after_first_event(b"\ndata: b\n\n") == b""  # the boundary is not whole
    assert after_first_event(b"no boundary") == b""
