"""Media, rerank and token-count answers known only by their head and tail.

Envoy's capture keeps the first 2 KB and the last 4 KB of an answer (docs/envoy.md);
the access log reader gives the parser those two windows of any larger answer. What an
answer's end says (tokens, size, quality, billed units) is read from the tail; what
only its middle holds (how many base64 images) is left to the request's quantity.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from policy_sidecar.providers import Usage, default_registry
from policy_sidecar.providers.units import request_quantity, route_unit

REGISTRY = default_registry()
HEAD, TAIL = 2048, 4096


def parser_for(path: str, *, streaming: bool = False):  # type: ignore[no-untyped-def]
    matched = REGISTRY.match("POST", path)
    assert matched is not None
    provider, route = matched
    return route, provider.usage_parser(route, streaming=streaming)


def windowed(path: str, body: bytes, *, streaming: bool = False) -> tuple[Usage | None, str]:
    assert len(body) > HEAD + TAIL, "the case must be larger than the capture"
    route, parser = parser_for(path, streaming=streaming)
    parser.feed_window(body[:HEAD], body[-TAIL:])
    return parser.finish(), route.operation


def image_answer(images: int) -> bytes:
    """gpt-image-1's answer (OpenAI API reference), each image 30 KB of base64."""
    picture = base64.b64encode(bytes(range(256)) * 90).decode()
    return json.dumps(
        {
            "created": 1713833628,
            "data": [{"b64_json": picture} for _ in range(images)],
            "quality": "high",
            "size": "1024x1536",
            "usage": {"total_tokens": 300, "input_tokens": 50, "output_tokens": 250},
        }
    ).encode()


@pytest.mark.parametrize("images", [1, 3])
def test_a_large_image_answer_bills_the_requested_count_and_its_tail(images: int) -> None:
    usage, operation = windowed("/v1/images/generations", image_answer(images))
    assert usage is not None
    # The middle (the images) was never seen: no count from the response...
    assert usage.quantity is None
    # ...but the tail's tokens, size and quality were.
    assert (usage.prompt_tokens, usage.completion_tokens) == (50, 250)
    assert usage.price_key is not None and "1024x1536" in usage.price_key
    billed = request_quantity(
        usage,
        unit=route_unit("openai", operation),
        quantity=float(images),
        estimated=False,
        price_key=None,
        ok=True,
    )
    assert billed is not None and (billed.unit, billed.quantity) == ("images", float(images))


def test_a_long_image_stream_bills_the_requested_count() -> None:
    picture = base64.b64encode(bytes(range(256)) * 90).decode()
    events: list[dict[str, Any]] = [
        {"type": "image_generation.partial_image", "b64_json": picture},
        {
            "type": "image_generation.completed",
            "b64_json": picture,
            "usage": {"total_tokens": 300, "input_tokens": 50, "output_tokens": 250},
        },
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    usage, _ = windowed("/v1/images/generations", body, streaming=True)
    assert usage is not None and (usage.unit, usage.quantity) == ("images", None)


def test_a_large_rerank_answer_reads_its_billed_units_from_the_tail() -> None:
    results = [{"index": i, "relevance_score": 1 / (i + 1)} for i in range(2000)]
    body = json.dumps({"results": results, "meta": {"billed_units": {"search_units": 7}}}).encode()
    usage, _ = windowed("/v2/rerank", body)
    assert usage == Usage(unit="search_units", quantity=7.0)


def test_a_rerank_tail_without_meta_reports_no_units() -> None:
    results = [{"index": i, "relevance_score": 0.5} for i in range(2000)]
    usage, _ = windowed("/v2/rerank", json.dumps({"results": results}).encode())
    assert usage is None


@pytest.mark.parametrize(
    "path", ["/v1/messages/count_tokens", "/v1beta/models/gemini-2.5-pro:countTokens"]
)
def test_a_token_count_error_larger_than_the_capture_counts_nothing(path: str) -> None:
    """Only a token count answer is counted (free, one request); an error body stays an
    error however it is cut."""
    body = json.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "x" * 7000}}
    ).encode()
    usage, _ = windowed(path, body)
    assert usage is None
