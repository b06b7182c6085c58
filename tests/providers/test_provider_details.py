"""Cohere, Gemini, Anthropic and OpenAI in detail: every fact a request gives, every
usage field a response gives, and the malformed ones, named.

Found by mutation testing (docs/testing.md, "providers (usage side)"): the fixture tests
check a few facts of each request and the usual usage shapes; these pin the whole
``ParsedRequest`` of each route and the usage read from every place a provider puts it.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import pytest

from policy_sidecar.providers import (
    ParsedRequest,
    PromptMessage,
    RequestError,
    Route,
    Usage,
    default_registry,
)
from policy_sidecar.providers.cohere import RerankParser, extract, rerank_usage

REGISTRY = default_registry()


def parse(path: str, body: dict[str, Any]) -> ParsedRequest:
    found = REGISTRY.match("POST", path)
    assert found is not None
    return found[0].parse_request(found[1], body)


def usage(path: str, body: bytes | dict[str, Any], *, streaming: bool = False) -> Usage | None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=streaming)
    parser.feed(body if isinstance(body, bytes) else json.dumps(body).encode())
    return parser.finish()


def window(path: str, head: bytes, tail: bytes, *, streaming: bool = False) -> Usage | None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=streaming)
    parser.feed_window(head, tail)
    return parser.finish()


def refused(path: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)):
        parse(path, body)


# -- Cohere requests -------------------------------------------------------------------


def test_cohere_v1_chat_in_full() -> None:
    body = {
        "model": "command-r-plus",
        "preamble": "Be brief.",
        "chat_history": [
            {"role": "USER", "message": "Who won?"},
            {"role": "CHATBOT", "message": "Team A."},
            {"role": "TOOL"},
            {"message": "no role"},
        ],
        "message": "By how much?",
        "documents": [{"title": "t", "snippet": "s"}],
        "tools": [{"name": "lookup"}],
        "tool_results": [{"call": {"name": "lookup"}, "outputs": [{"score": 3}]}],
        "stream": True,
        "max_tokens": 300,
    }
    assert parse("/v1/chat", body) == ParsedRequest(
        model="command-r-plus",
        stream=True,
        max_output_tokens=300,
        messages=(
            PromptMessage("system", "Be brief."),
            PromptMessage("USER", "Who won?"),
            PromptMessage("CHATBOT", "Team A."),
            PromptMessage("TOOL", ""),
            PromptMessage("", "no role"),
            PromptMessage("USER", "By how much?"),
        ),
        extra_text=(
            '{"title":"t","snippet":"s"}',
            '{"name":"lookup"}',
            '{"call":{"name":"lookup"},"outputs":[{"score":3}]}',
        ),
    )
    assert parse("/v1/chat", {"message": "hi"}) == ParsedRequest(
        model=None, stream=False, max_output_tokens=None, messages=(PromptMessage("USER", "hi"),)
    )


def test_cohere_v2_chat_in_full() -> None:
    body = {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": {"type": "text", "text": "Look at this"}},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and "},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {"type": "text", "text": "this"},
                ],
            },
            {
                "role": "assistant",
                "tool_plan": "I will look.",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "c2"},
                ],
            },
            {"role": "assistant", "tool_plan": 7, "content": "ok"},
        ],
        "documents": ["doc one"],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "stream": False,
        "max_tokens": 50,
    }
    assert parse("/v2/chat", body) == ParsedRequest(
        model="command-a-03-2025",
        stream=False,
        max_output_tokens=50,
        messages=(
            PromptMessage("system", "Be brief."),
            PromptMessage("user", "Look at this"),
            PromptMessage("user", "and this"),
            PromptMessage(
                "assistant",
                'I will look.{"id":"c1","function":{"name":"f","arguments":"{}"}}{"id":"c2"}',
            ),
            PromptMessage("assistant", "ok"),
        ),
        extra_text=('"doc one"', '{"type":"function","function":{"name":"f"}}'),
        image_count=1,
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cohere_embed_in_full(version: str) -> None:
    body = {
        "model": "embed-v4.0",
        "texts": ["a", "b"],
        "images": ["data:image/png;base64,AAAA"],
        "inputs": [
            {"content": [{"type": "text", "text": "c"}, {"type": "image_url", "image_url": {}}]},
            {"content": [{"type": "image_url", "image_url": {}}]},
        ],
    }
    assert parse(f"/{version}/embed", body) == ParsedRequest(
        model="embed-v4.0",
        stream=False,
        max_output_tokens=0,
        extra_text=("a", "b", "c", ""),
        image_count=3,
    )


def test_cohere_v1_may_leave_the_model_out_v2_may_not() -> None:
    assert parse("/v1/embed", {"texts": ["a"]}).model is None
    assert parse("/v1/rerank", {"query": "q", "documents": ["d"]}).model is None
    refused("/v2/embed", {"texts": ["a"]}, "'model' is required")
    refused("/v2/rerank", {"query": "q", "documents": ["d"]}, "'model' is required")
    refused("/v1/embed", {"model": 3}, "'model' must be a string, got integer")
    refused("/v1/rerank", {"model": 3, "query": "q", "documents": []}, "'model' must be a string")


@pytest.mark.parametrize(
    ("documents", "units"), [(0, 1), (1, 1), (100, 1), (101, 2), (250, 3), (1000, 10)]
)
def test_cohere_rerank_estimates_search_units(documents: int, units: int) -> None:
    body = {"model": "rerank-v3.5", "query": "q", "documents": ["d"] * documents}
    assert parse("/v2/rerank", body) == ParsedRequest(
        model="rerank-v3.5",
        stream=False,
        max_output_tokens=0,
        quantity=float(units),
        quantity_estimated=True,
    )


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v2/embed", {"model": "e", "inputs": ["x"]}, "'inputs[0]' must be an object, got string"),
        (
            "/v2/embed",
            {"model": "e", "inputs": [{"content": 5}]},
            "'inputs[0].content' must be a string or an array, got integer",
        ),
        ("/v2/embed", {"model": "e", "inputs": {}}, "'inputs' must be an array, got object"),
        ("/v2/embed", {"model": "e", "images": 1}, "'images' must be an array, got integer"),
        ("/v2/rerank", {"model": "r", "documents": []}, "'query' is required"),
        ("/v2/rerank", {"model": "r", "query": "q"}, "'documents' is required"),
        ("/v1/chat", {"message": "m", "chat_history": [3]}, "'chat_history[0]' must be an object"),
        (
            "/v1/chat",
            {"message": "m", "chat_history": [{"role": "USER", "message": 3}]},
            "'chat_history[0].message' must be a string, got integer",
        ),
        ("/v1/chat", {"message": "m", "preamble": 3}, "'preamble' must be a string, got integer"),
        ("/v1/chat", {"message": "m", "max_tokens": -2}, "'max_tokens' must be a non-negative"),
        ("/v1/chat", {"message": "m", "stream": 1}, "'stream' must be a boolean, got integer"),
        ("/v2/chat", {"model": "c", "messages": [1]}, "'messages[0]' must be an object, got int"),
        ("/v2/chat", {"model": "c", "messages": [{"content": "x"}]}, "'messages[0].role' is req"),
        (
            "/v2/chat",
            {"model": "c", "messages": [{"role": "user", "tool_calls": {}}]},
            "'messages[0].tool_calls' must be an array, got object",
        ),
        ("/v2/chat", {"model": "c"}, "'messages' is required"),
        ("/v2/chat", {"messages": []}, "'model' is required"),
    ],
)
def test_cohere_malformed_requests_name_the_field(
    path: str, body: dict[str, Any], message: str
) -> None:
    refused(path, body, message)


# -- Cohere usage ----------------------------------------------------------------------


def test_cohere_billed_units_win_field_by_field_over_tokens() -> None:
    meta = {
        "billed_units": {"input_tokens": 31},
        "tokens": {"input_tokens": 727, "output_tokens": 12},
    }
    assert extract({"meta": meta}) == {"prompt": 31, "completion": 12}
    assert extract({"meta": {"tokens": {"input_tokens": 70, "output_tokens": 8}}}) == {
        "prompt": 70,
        "completion": 8,
    }
    # Integral floats count; fractions, booleans and text do not.
    counts = {"input_tokens": 7.0, "output_tokens": 2.5}
    assert extract({"meta": {"billed_units": counts}}) == {"prompt": 7}
    assert (
        extract({"usage": {"billed_units": {"input_tokens": True, "output_tokens": "3"}}}) is None
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # v2 JSON: usage on top
        ({"usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418}}}, (5, 418)),
        # v2 message-end: delta.usage
        ({"delta": {"usage": {"billed_units": {"input_tokens": 5, "output_tokens": 8}}}}, (5, 8)),
        # v1 JSON and embed: meta
        ({"meta": {"billed_units": {"input_tokens": 2}}}, (2, 0)),
        # v1 stream-end: response.meta
        ({"response": {"meta": {"billed_units": {"output_tokens": 3}}}}, (0, 3)),
        # an empty usage on top does not hide the meta
        ({"usage": {}, "meta": {"billed_units": {"input_tokens": 4}}}, (4, 0)),
        ({"delta": "x", "response": {"meta": {"tokens": {"input_tokens": 6}}}}, (6, 0)),
    ],
)
def test_cohere_usage_wherever_the_api_puts_it(
    body: dict[str, Any], expected: tuple[int, int]
) -> None:
    prompt, completion = expected
    assert usage("/v2/chat", body) == Usage(prompt, completion, prompt + completion)


@pytest.mark.parametrize(
    "body",
    [[], "x", {"usage": None}, {"meta": {"billed_units": "x"}}, {"delta": {"usage": {}}}],
)
def test_cohere_no_usage_in_odd_bodies(body: Any) -> None:
    assert usage("/v2/chat", json.dumps(body).encode()) is None


def test_cohere_rerank_usage() -> None:
    answer = {
        "results": [{"index": 0, "relevance_score": 0.9}],
        "meta": {"billed_units": {"search_units": 2}},
    }
    assert usage("/v2/rerank", answer) == Usage(unit="search_units", quantity=2.0)
    # What the response leaves out is filled from the request's estimate later.
    assert rerank_usage({"results": []}) == Usage(unit="search_units", quantity=None)
    assert rerank_usage({"results": [], "meta": "x"}) == Usage(unit="search_units")
    assert rerank_usage({"results": [], "meta": {"billed_units": 3}}) == Usage(unit="search_units")
    assert rerank_usage({"results": [], "meta": {"billed_units": {}}}) == Usage(unit="search_units")
    counts = {"search_units": 1.5}
    assert rerank_usage({"results": [], "meta": {"billed_units": counts}}) == Usage(
        unit="search_units"
    )
    # An error answer (no results) is no usage.
    assert rerank_usage({"message": "bad", "meta": {}}) is None
    assert rerank_usage([]) is None
    assert usage("/v2/rerank", b'{"results": [') is None


def test_cohere_rerank_window_reads_the_billed_units_from_the_tail() -> None:
    results = ",".join(f'{{"index":{i},"relevance_score":0.5}}' for i in range(2000))
    body = f'{{"id":"r","results":[{results}],"meta":{{"billed_units":{{"search_units":20}}}}}}'
    data = body.encode()
    assert window("/v2/rerank", data[:4096], data[-4096:]) == Usage(
        unit="search_units", quantity=20.0
    )
    # A tail cut inside a UTF-8 character is still read.
    text = '"caf\u00e9 caf\u00e9","meta":{"billed_units":{"search_units":4}}}'.encode()
    assert window("/v2/rerank", b'{"results":[', text[5:]) == Usage(
        unit="search_units", quantity=4.0
    )
    # A tail whose last meta is not an object, or that has none: no usage.
    assert window("/v2/rerank", b'{"results":[', b'"meta": 5}') is None
    assert window("/v2/rerank", b'{"results":[', b"0.5}]}") is None
    parser = RerankParser()
    parser.feed(b'{"results":[],')
    parser.feed(b'"meta":{"billed_units":{"search_units":1}}}')
    assert parser.finish() == Usage(unit="search_units", quantity=1.0)


def test_cohere_streams() -> None:
    v2 = (
        b'event: message-start\ndata: {"type":"message-start"}\n\n'
        b'event: message-end\ndata: {"type":"message-end","delta":{"usage":'
        b'{"billed_units":{"input_tokens":5,"output_tokens":8}}}}\n\n'
    )
    assert usage("/v2/chat", v2, streaming=True) == Usage(5, 8, 13)
    v1 = (
        b'{"event_type":"text-generation","text":"meta"}\n'
        b'{"event_type":"stream-end","response":{"meta":{"billed_units":'
        b'{"input_tokens":31,"output_tokens":12}}}}\n'
    )
    assert usage("/v1/chat", v1, streaming=True) == Usage(31, 12, 43)
    assert usage("/v1/embed", {"meta": {"billed_units": {"input_tokens": 2}}}) == Usage(2, 0, 2)


def test_cohere_json_window_and_compressed_bodies() -> None:
    texts = ",".join(f'"text {i}"' for i in range(3000))
    body = (
        f'{{"id":"e","texts":[{texts}],"meta":{{"api_version":{{"version":"1"}},'
        f'"billed_units":{{"input_tokens":6000}}}}}}'
    ).encode()
    assert window("/v1/embed", body[:4096], body[-4096:]) == Usage(6000, 0, 6000)
    found = REGISTRY.match("POST", "/v2/chat")
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=False, content_encoding="gzip")
    answer = {"id": "c", "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418}}}
    parser.feed(gzip.compress(json.dumps(answer).encode()))
    assert parser.finish() == Usage(5, 418, 423)


def test_cohere_route_without_a_version_is_read_as_v2() -> None:
    provider = REGISTRY.get("cohere")
    with pytest.raises(RequestError, match="'model' is required"):
        provider.parse_request(Route("cohere", "embed"), {"texts": ["a"]})
    with pytest.raises(RequestError, match="'model' is required"):
        provider.parse_request(Route("cohere", "rerank"), {"query": "q", "documents": []})


def test_cohere_routes_and_error_body() -> None:
    provider = REGISTRY.get("cohere")
    assert provider.match("POST", "/V2/Chat/?x=1") == Route("cohere", "chat", api_version="v2")
    assert provider.match("GET", "/v2/chat") is None
    assert provider.match("POST", "/v3/chat") is None
    assert provider.match("POST", "/v2/chatX") is None
    assert provider.request_patch(Route("cohere", "chat", api_version="v2"), {}) is None
    body = provider.error_body(
        message="no", error_type="t", code="c", status=429, details={"limit": 3}
    )
    assert body == b'{"message":"no","details":{"limit":3}}'


# -- Gemini requests -------------------------------------------------------------------

GEMINI = "/v1beta/models/gemini-2.5-flash"


def test_gemini_generate_in_full() -> None:
    body = {
        "system_instruction": {"parts": [{"text": "Be brief."}, {"inlineData": {}}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is in "},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"fileUri": "gs://x"}},
                    {"text": "these?"},
                    {"executableCode": {"code": "print(1)"}},
                ],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
            {"parts": [{"functionResponse": {"name": "f", "response": {"r": 2}}}]},
            {"role": 5, "parts": []},
        ],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "generationConfig": {"maxOutputTokens": 128, "temperature": 0.2},
    }
    assert parse(f"{GEMINI}:streamGenerateContent?alt=sse", body) == ParsedRequest(
        model="gemini-2.5-flash",
        stream=True,
        max_output_tokens=128,
        messages=(
            PromptMessage("system", "Be brief."),
            PromptMessage("user", "What is in these?"),
            PromptMessage("model", '{"name":"f","args":{"a":1}}'),
            PromptMessage("user", '{"name":"f","response":{"r":2}}'),
            PromptMessage("user", ""),
        ),
        extra_text=('{"functionDeclarations":[{"name":"f"}]}',),
        image_count=3,
    )
    # systemInstruction wins over its snake_case spelling; no generationConfig: no cap.
    body = {
        "systemInstruction": {"parts": [{"text": "A"}]},
        "system_instruction": {"parts": [{"text": "B"}]},
        "contents": [],
    }
    assert parse(f"{GEMINI}:generateContent", body) == ParsedRequest(
        model="gemini-2.5-flash",
        stream=False,
        max_output_tokens=None,
        messages=(PromptMessage("system", "A"),),
    )


def test_gemini_embeddings_and_token_counts_in_full() -> None:
    content = {"parts": [{"text": "hello "}, {"text": "world"}, {"inlineData": {}}]}
    assert parse(f"{GEMINI}:embedContent", {"content": content}) == ParsedRequest(
        model="gemini-2.5-flash",
        stream=False,
        max_output_tokens=0,
        extra_text=("hello world",),
        image_count=1,
    )
    requests = [{"content": content}, {"content": {"parts": [{"fileData": {}}, {"text": "x"}]}}]
    assert parse(f"{GEMINI}:batchEmbedContents", {"requests": requests}) == ParsedRequest(
        model="gemini-2.5-flash",
        stream=False,
        max_output_tokens=0,
        extra_text=("hello world", "x"),
        image_count=2,
    )
    assert parse(f"{GEMINI}:countTokens", {"contents": []}) == ParsedRequest(
        model="gemini-2.5-flash", stream=False, max_output_tokens=0, quantity=1.0
    )


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (":embedContent", {}, "'content' must be an object, got null"),
        (":embedContent", {"content": {}}, "'content.parts' is required"),
        (":embedContent", {"content": {"parts": [3]}}, "'content.parts[0]' must be an object"),
        (":batchEmbedContents", {}, "'requests' is required"),
        (":batchEmbedContents", {"requests": [1]}, "'requests[0]' must be an object, got integer"),
        (
            ":batchEmbedContents",
            {"requests": [{"content": {"parts": "x"}}]},
            "'requests[0].content.parts' must be an array, got string",
        ),
        (
            ":batchEmbedContents",
            {"requests": [{}]},
            "'requests[0].content' must be an object, got null",
        ),
        (":generateContent", {"contents": [1]}, "'contents[0]' must be an object, got integer"),
        (
            ":generateContent",
            {"contents": [], "systemInstruction": "x"},
            "'systemInstruction' must be an object, got string",
        ),
        (
            ":generateContent",
            {"contents": [], "generationConfig": []},
            "'generationConfig' must be an object, got array",
        ),
        (":generateContent", {"contents": [], "tools": {}}, "'tools' must be an array, got object"),
    ],
)
def test_gemini_malformed_requests_name_the_field(
    path: str, body: dict[str, Any], message: str
) -> None:
    refused(GEMINI + path, body, message)


# -- Gemini usage ----------------------------------------------------------------------


def _gemini(metadata: dict[str, Any]) -> Usage | None:
    return usage(f"{GEMINI}:generateContent", {"candidates": [], "usageMetadata": metadata})


def test_gemini_usage_fields() -> None:
    full = {
        "promptTokenCount": 312,
        "candidatesTokenCount": 14,
        "thoughtsTokenCount": 423,
        "cachedContentTokenCount": 256,
        "totalTokenCount": 749,
    }
    assert _gemini(full) == Usage(312, 437, 749, 256, 423)
    # Thinking without candidates (cut short); the provider's total is followed.
    assert _gemini({"promptTokenCount": 9, "thoughtsTokenCount": 5}) == Usage(9, 5, 14, 0, 5)
    assert _gemini({"promptTokenCount": 9, "totalTokenCount": 20}) == Usage(9, 0, 20)
    # A prompt-less answer with a total still counts; candidates alone do not.
    assert _gemini({"totalTokenCount": 7}) == Usage(0, 0, 7)
    assert _gemini({"candidatesTokenCount": 7}) is None
    assert _gemini({}) is None
    assert usage(f"{GEMINI}:generateContent", b"[5]") is None


def test_gemini_stream_usage_is_the_last_chunks_whole() -> None:
    # Each chunk repeats the usage so far; the last one's is the usage, whole: a field an
    # earlier chunk had and the last lacks is not carried over.
    first = {"usageMetadata": {"promptTokenCount": 9, "cachedContentTokenCount": 4}}
    last = {"usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 6}}
    sse = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (first, last))
    assert usage(f"{GEMINI}:streamGenerateContent?alt=sse", sse, streaming=True) == Usage(9, 6, 15)


def test_gemini_framing_follows_the_streaming_flag() -> None:
    metadata = b'{"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6}}'
    # A stream request answered with one JSON object is read as JSON.
    stream = f"{GEMINI}:streamGenerateContent"
    assert usage(stream, b"\n" + metadata, streaming=True) == Usage(9, 6, 15)
    # A body not declared a stream is JSON only: SSE framing in it is not read.
    sse = b"data: " + metadata + b"\n\n"
    assert usage(f"{GEMINI}:generateContent", sse, streaming=False) is None
    assert usage(stream, sse, streaming=True) == Usage(9, 6, 15)
    found = REGISTRY.match("POST", f"{GEMINI}:generateContent")
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=False, content_encoding="gzip")
    parser.feed(gzip.compress(metadata))
    assert parser.finish() == Usage(9, 6, 15)


def test_gemini_streams_and_counts() -> None:
    chunk = 'data: {"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":%d}}\n\n'
    sse = "".join(chunk % n for n in (1, 4, 6)).encode()
    assert usage(f"{GEMINI}:streamGenerateContent?alt=sse", sse, streaming=True) == Usage(9, 6, 15)
    # Not streaming (an error answer to a stream request): one JSON object.
    assert usage(f"{GEMINI}:streamGenerateContent", {"usageMetadata": {"totalTokenCount": 3}}) == (
        Usage(0, 0, 3)
    )
    for streaming in (False, True):
        counted = usage(f"{GEMINI}:countTokens", b'{"totalTokens": 31}', streaming=streaming)
        assert counted == Usage(unit="requests", quantity=1.0)
        assert usage(f"{GEMINI}:countTokens", b'{"error": {}}', streaming=streaming) is None


def test_gemini_routes_and_error_body() -> None:
    provider = REGISTRY.get("gemini")
    assert provider.match("POST", "/V1ALPHA/models/g-1:CountTokens/") == Route(
        "gemini", "count_tokens", model_from_path="g-1", api_version="v1alpha"
    )
    assert provider.match("GET", f"{GEMINI}:generateContent") is None
    assert provider.match("POST", "/v2/models/g:generateContent") is None
    assert provider.request_patch(Route("gemini", "generate"), {}) is None
    raw = provider.error_body(
        message="no", error_type="t", code="TOKENS", status=418, details={"a": "x", "n": [1]}
    )
    assert b" " not in raw  # compact JSON
    error = json.loads(raw)
    assert error == {
        "error": {
            "code": 418,
            "message": "no",
            "status": "FAILED_PRECONDITION",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "TOKENS",
                    "domain": "policy-sidecar",
                    "metadata": {"a": "x", "n": "[1]"},
                }
            ],
        }
    }


# -- Anthropic requests ----------------------------------------------------------------


def test_anthropic_messages_in_full() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "image", "source": {}}],
        "messages": [
            {"role": "user", "content": "Hello"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Hmm.", "signature": "s"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "t1", "name": "get", "input": {"q": 1}},
                    {"type": "tool_use", "id": "t2"},
                    {"type": "redacted_thinking", "data": "xx"},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "42"}, {"type": "image"}],
                    },
                    {"type": "tool_result", "tool_use_id": "t2"},
                    {"type": "tool_result", "tool_use_id": "t3", "content": "plain"},
                    {"type": "image", "source": {}},
                    {"type": "thinking"},
                ],
            },
        ],
        "tools": [{"name": "get", "input_schema": {"type": "object"}}],
    }
    assert parse("/v1/messages", body) == ParsedRequest(
        model="claude-sonnet-4-5",
        stream=True,
        max_output_tokens=1024,
        messages=(
            PromptMessage("system", "Be brief."),
            PromptMessage("user", "Hello"),
            PromptMessage("assistant", 'Hmm.Let me look.get{"q":1}{}'),
            PromptMessage("user", "42plain"),
        ),
        extra_text=('{"name":"get","input_schema":{"type":"object"}}',),
        image_count=3,
    )
    assert parse("/v1/messages", {"model": "c", "system": None, "messages": []}) == (
        ParsedRequest(model="c", stream=False, max_output_tokens=None)
    )


def test_anthropic_count_tokens_in_full() -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    assert parse("/v1/messages/count_tokens", body) == ParsedRequest(
        model="claude-sonnet-4-5", stream=False, max_output_tokens=0, quantity=1.0
    )
    refused("/v1/messages/count_tokens", {"model": "c"}, "'messages' is required")
    refused("/v1/messages/count_tokens", {"messages": []}, "'model' is required")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": "c", "messages": [{"role": "user"}]},
            "'messages[0].content' must be a string or an array, got null",
        ),
        ({"model": "c", "messages": [{"content": "x"}]}, "'messages[0].role' is required"),
        ({"model": "c", "messages": ["x"]}, "'messages[0]' must be an object, got string"),
        (
            {"model": "c", "messages": [{"role": "user", "content": [3]}]},
            "'messages[0].content[0]' must be an object",
        ),
        (
            {"model": "c", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "'messages[0].content[0].text' is required",
        ),
        (
            {
                "model": "c",
                "messages": [{"role": "user", "content": [{"type": "tool_result", "content": 5}]}],
            },
            "'messages[0].content[0].content' must be a string or an array, got integer",
        ),
        (
            {"model": "c", "messages": [], "system": [{"type": None}]},
            "'system[0].type' must be a string, got null",
        ),
        ({"model": "c", "messages": [], "tools": 1}, "'tools' must be an array, got integer"),
        ({"model": "c", "messages": [], "stream": "no"}, "'stream' must be a boolean, got string"),
        ({"model": "c"}, "'messages' is required"),
    ],
)
def test_anthropic_malformed_requests_name_the_field(body: dict[str, Any], message: str) -> None:
    refused("/v1/messages", body, message)


# -- Anthropic usage -------------------------------------------------------------------


def _anthropic(fields: dict[str, Any]) -> Usage | None:
    return usage("/v1/messages", {"type": "message", "content": [], "usage": fields})


def test_anthropic_usage_fields() -> None:
    # Cache reads and writes are prompt tokens; the split of the writes by lifetime.
    fields = {
        "input_tokens": 21,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 393,
    }
    assert _anthropic(fields) == Usage(
        3121, 393, 3514, 100, cache_write_5m_tokens=1000, cache_write_1h_tokens=2000
    )
    # Without the split: every write a 5-minute one; with the 1-hour part only, the
    # 5-minute part is the rest.
    fields = {"input_tokens": 5, "cache_creation_input_tokens": 300, "output_tokens": 1}
    assert _anthropic(fields) == Usage(305, 1, 306, cache_write_5m_tokens=300)
    fields["cache_creation"] = {"ephemeral_1h_input_tokens": 120}
    assert _anthropic(fields) == Usage(
        305, 1, 306, cache_write_5m_tokens=180, cache_write_1h_tokens=120
    )
    # A split that does not add up to the total is taken as given.
    fields["cache_creation"] = {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 50}
    assert _anthropic(fields) == Usage(
        305, 1, 306, cache_write_5m_tokens=100, cache_write_1h_tokens=50
    )
    fields["cache_creation"] = {"ephemeral_1h_input_tokens": 400}  # absurd: never negative
    assert _anthropic(fields) == Usage(
        305, 1, 306, cache_write_5m_tokens=0, cache_write_1h_tokens=400
    )
    assert _anthropic({"output_tokens": 4}) == Usage(0, 4, 4)
    assert _anthropic({"input_tokens": 4}) == Usage(4, 0, 4)
    assert _anthropic({"cache_read_input_tokens": 4}) is None
    assert _anthropic({"input_tokens": "4", "output_tokens": None}) is None


def test_anthropic_stream_merges_start_and_deltas() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        b'{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n'
        b'event: ping\ndata: {"type":"ping"}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":7}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9,'
        b'"input_tokens":12}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert usage("/v1/messages", stream, streaming=True) == Usage(17, 15, 32, 5)
    only_start = stream[: stream.index(b"event: ping")]
    assert usage("/v1/messages", only_start, streaming=True) == Usage(15, 1, 16, 5)
    # A stream cut right after a message_start that gave only its input.
    start = b'data: {"type":"message_start","message":{"usage":{"input_tokens":10}}}\n\n'
    assert usage("/v1/messages", start, streaming=True) == Usage(10, 0, 10)
    # A message_start's own usage is under "message"; a top-level one is ignored there.
    odd = b'data: {"message":{"id":"m"},"usage":{"input_tokens":3}}\n\n'
    assert usage("/v1/messages", odd, streaming=True) is None


def test_anthropic_token_counts_and_routes() -> None:
    for streaming in (False, True):
        counted = usage("/v1/messages/count_tokens", b'{"input_tokens": 14}', streaming=streaming)
        assert counted == Usage(unit="requests", quantity=1.0)
    provider = REGISTRY.get("anthropic")
    assert provider.match("POST", "/V1/Messages/?beta=true") == Route("anthropic", "messages")
    assert provider.match("POST", "/v1/messages/count_tokens/") == Route(
        "anthropic", "count_tokens"
    )
    assert provider.match("GET", "/v1/messages") is None
    assert provider.match("POST", "/v1/messages/batches") is None
    assert provider.request_patch(Route("anthropic", "messages"), {}) is None
    error = provider.error_body(
        message="no", error_type="rate_limit_error", code="c", status=429, details={"a": 1}
    )
    assert error == (
        b'{"type":"error","error":{"type":"rate_limit_error","message":"no","details":{"a":1}}}'
    )


# -- OpenAI and Azure ------------------------------------------------------------------


def test_openai_responses_usage_in_full() -> None:
    fields = {
        "input_tokens": 328,
        "input_tokens_details": {"cached_tokens": 128},
        "output_tokens": 148,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 480,  # the provider's own total is followed, even when odd
    }
    assert usage("/v1/responses", {"object": "response", "usage": fields}) == Usage(
        328, 148, 480, 128, 64
    )
    event = {"type": "response.completed", "response": {"usage": fields}}
    sse = b"event: response.completed\ndata: " + json.dumps(event).encode() + b"\n\n"
    assert usage("/v1/responses", sse, streaming=True) == Usage(328, 148, 480, 128, 64)
    assert usage("/v1/responses", {"response": {"usage": None}, "usage": fields}) is None
    assert usage("/v1/responses", {"usage": "x"}) is None
    assert usage("/v1/responses", b"[1, 2]") is None


def test_openai_chat_usage_in_full() -> None:
    fields = {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    assert usage("/v1/chat/completions", {"usage": fields}) == Usage(1117, 46, 1200, 1024, 10)
    assert usage("/v1/chat/completions", {"usage": {"total_tokens": 3}}) is None
    assert usage("/v1/chat/completions", b'"usage"') is None


def test_openai_and_azure_patch_only_streaming_chat_and_completions() -> None:
    patch = {"stream_options": {"include_usage": True}}
    for path in ("/v1/chat/completions", "/v1/completions", "/openai/v1/chat/completions"):
        found = REGISTRY.match("POST", path)
        assert found is not None
        assert found[0].request_patch(found[1], {"stream": True}) == patch
    for path in ("/v1/responses", "/v1/embeddings", "/openai/v1/responses"):
        found = REGISTRY.match("POST", path)
        assert found is not None
        assert found[0].request_patch(found[1], {"stream": True}) is None


def test_openai_error_body_is_compact_json() -> None:
    for name in ("openai", "azure"):
        body = REGISTRY.get(name).error_body(
            message="no", error_type="rate_limit_error", code="c", status=429, details={"a": 1}
        )
        assert body == (
            b'{"error":{"message":"no","type":"rate_limit_error","param":null,"code":"c",'
            b'"details":{"a":1}}}'
        )


def test_azure_routes_and_requests() -> None:
    provider = REGISTRY.get("azure")
    assert provider.match("POST", "/openai/deployments/d1/Chat/Completions/") == Route(
        "azure", "chat", model_from_path="d1"
    )
    assert provider.match("POST", "/openai/v1/responses/?api-version=preview&api-version=2") == (
        Route("azure", "responses", api_version="preview")
    )
    assert provider.match("GET", "/openai/v1/chat/completions") is None
    assert provider.match("POST", "/openai/v1/responsesX") is None
    assert provider.match("POST", "/openai/deployments/d1/images/generations") is None
    route = Route("azure", "embeddings", model_from_path="emb")
    assert provider.parse_request(route, {"input": "hi"}).model == "emb"
    assert (
        provider.parse_request(Route("azure", "embeddings"), {"model": "m", "input": "hi"}).model
        == "m"
    )
