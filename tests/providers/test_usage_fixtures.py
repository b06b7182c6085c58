"""Usage read from realistic response fixtures: exact numbers, JSON and streams."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from policy_sidecar.providers import Usage, default_registry

FIXTURES = Path(__file__).parents[1] / "fixtures"
REGISTRY = default_registry()

# (path, fixture, streaming, expected usage)
CASES = [
    ("/v1/chat/completions", "openai/chat_response.json", False, Usage(1117, 46, 1163, 1024, 0)),
    ("/v1/chat/completions", "openai/chat_stream.txt", True, Usage(19, 10, 29, 0, 0)),
    ("/v1/completions", "openai/completions_response.json", False, Usage(5, 7, 12)),
    ("/v1/completions", "openai/completions_stream.txt", True, Usage(5, 5, 10)),
    ("/v1/embeddings", "openai/embeddings_response.json", False, Usage(12, 0, 12)),
    ("/v1/responses", "openai/responses_response.json", False, Usage(328, 148, 476, 128, 128)),
    ("/v1/responses", "openai/responses_stream.txt", True, Usage(328, 148, 476, 0, 128)),
    (
        "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        "azure/chat_response.json",
        False,
        Usage(28, 12, 40),
    ),
    (
        "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        "azure/chat_stream.txt",
        True,
        Usage(28, 2, 30),
    ),
    # The 188,086 cache-creation tokens are 5-minute writes (usage.cache_creation).
    (
        "/v1/messages",
        "anthropic/messages_response.json",
        False,
        Usage(188107, 393, 188500, 0, cache_write_5m_tokens=188086),
    ),
    ("/v1/messages", "anthropic/messages_stream.txt", True, Usage(188113, 15, 188128, 188086)),
    # Server-side compaction: billed = the sum over usage.iterations (180000 + 23000 in,
    # 3500 + 1000 out), not the top-level figures (23000 / 1000) that leave it out.
    (
        "/v1/messages",
        "anthropic/messages_compaction_response.json",
        False,
        Usage(203000, 4500, 207500, 0),
    ),
    ("/v1/chat", "cohere/v1_chat_response.json", False, Usage(31, 17, 48)),
    ("/v1/chat", "cohere/v1_chat_stream.txt", True, Usage(31, 12, 43)),
    ("/v2/chat", "cohere/v2_chat_response.json", False, Usage(5, 418, 423)),
    ("/v2/chat", "cohere/v2_chat_stream.txt", True, Usage(5, 8, 13)),
    ("/v1/embed", "cohere/v1_embed_response.json", False, Usage(2, 0, 2)),
    ("/v2/embed", "cohere/v2_embed_response.json", False, Usage(2, 0, 2)),
    (
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "gemini/generate_response.json",
        False,
        Usage(312, 437, 749, 256, 423),
    ),
    (
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "gemini/stream_sse.txt",
        True,
        Usage(9, 32, 41, 0, 20),
    ),
    (
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        "gemini/stream_array.json",
        True,
        Usage(9, 6, 15),
    ),
]

ERRORS = [
    ("/v1/chat/completions", "errors/openai_429.json", False),
    ("/v1/chat/completions", "errors/openai_429.json", True),
    ("/v1/messages", "errors/anthropic_529.json", False),
    ("/v1/messages", "errors/anthropic_stream_error.txt", True),
    ("/v1beta/models/gemini-2.5-pro:generateContent", "errors/gemini_400.json", False),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", "errors/gemini_400.json", True),
    ("/v2/chat", "errors/cohere_400.json", False),
    ("/v1/chat", "errors/cohere_400.json", True),
]


def parse(path: str, body: bytes, *, streaming: bool, encoding: str | None = None) -> Usage | None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    provider, route = found
    parser = provider.usage_parser(route, streaming=streaming, content_encoding=encoding)
    parser.feed(body)
    return parser.finish()


@pytest.mark.parametrize(("path", "fixture", "streaming", "expected"), CASES)
def test_usage_from_fixture(path: str, fixture: str, streaming: bool, expected: Usage) -> None:
    body = (FIXTURES / fixture).read_bytes()
    assert parse(path, body, streaming=streaming) == expected


@pytest.mark.parametrize(("path", "fixture", "streaming", "expected"), CASES)
def test_usage_byte_by_byte(path: str, fixture: str, streaming: bool, expected: Usage) -> None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=streaming)
    for byte in (FIXTURES / fixture).read_bytes():
        parser.feed(bytes([byte]))
    assert parser.finish() == expected


@pytest.mark.parametrize(("path", "fixture", "streaming"), ERRORS)
def test_error_bodies_yield_no_usage(path: str, fixture: str, streaming: bool) -> None:
    assert parse(path, (FIXTURES / fixture).read_bytes(), streaming=streaming) is None


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", _deflate)])
@pytest.mark.parametrize(("path", "fixture", "streaming", "expected"), CASES[:4] + CASES[9:11])
def test_compressed_bodies(
    encoding: str,
    compress: object,
    path: str,
    fixture: str,
    streaming: bool,
    expected: Usage,
) -> None:
    assert callable(compress)
    packed: bytes = compress((FIXTURES / fixture).read_bytes())
    found = REGISTRY.match("POST", path)
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=streaming, content_encoding=encoding)
    for i in range(0, len(packed), 7):
        parser.feed(packed[i : i + 7])
    assert parser.finish() == expected


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("br", b"\x1b\x03\x00"), ("gzip", b"not gzip at all"), ("deflate", b"\x00\x01garbage")],
)
def test_undecodable_bodies_yield_no_usage(encoding: str, body: bytes) -> None:
    assert parse("/v1/chat/completions", body, streaming=False, encoding=encoding) is None


def test_large_json_body_reads_usage_from_tail() -> None:
    item = '{"object":"embedding","index":%d,"embedding":[' + "0.125," * 500 + "1]}"
    vectors = ",".join(item % i for i in range(700))
    usage = '"usage":{"prompt_tokens":4242,"total_tokens":4242}'
    body = (
        f'{{"object":"list","data":[{vectors}],"model":"text-embedding-3-large",{usage}}}'.encode()
    )
    assert len(body) > 2 * 1024 * 1024
    assert parse("/v1/embeddings", body, streaming=False) == Usage(4242, 0, 4242)


def test_anthropic_iterations_sum_every_billed_field() -> None:
    from policy_sidecar.providers.anthropic import billed_iterations, extract

    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "iterations": [
            {"type": "compaction", "input_tokens": 100, "output_tokens": 30,
             "cache_read_input_tokens": 40},
            {"type": "message", "input_tokens": 10, "output_tokens": 5,
             "cache_creation_input_tokens": 7, "cache_read_input_tokens": 2},
            "garbage",
        ],
    }  # fmt: skip
    assert billed_iterations(usage) == {
        "input": 110, "output": 35, "cache_read": 42, "cache_creation": 7
    }  # fmt: skip
    # No iterations, an empty or malformed list: the top-level figures.
    for iterations in ([], None, "x", [{"type": "message"}]):
        top = extract({"usage": {"input_tokens": 10, "output_tokens": 5, "iterations": iterations}})
        assert top == {"input": 10, "output": 5}
