"""The generic usage parsers, window cuts and line framing, at their edges.

Found by mutation testing (docs/testing.md, "providers (usage side)"): the size at which
a JSON body is read from its tail only, a usage key that appears after the last usage
member, a tail cut inside a UTF-8 character, usage that only the head of a captured
window holds, and line and event boundaries in heads and tails.
"""

from __future__ import annotations

import json
import re

import pytest

from policy_sidecar.providers import (
    Route,
    Usage,
    default_registry,
    is_streaming_response,
    unmetered,
)
from policy_sidecar.providers._usage import (
    FULL_PARSE_LIMIT,
    TAIL_BYTES,
    CountTokensParser,
    JSONBodyParser,
    NDJSONUsageParser,
    SniffingParser,
    SSEUsageParser,
    int_fields,
    std_usage,
)
from policy_sidecar.providers.base import UsageParser
from policy_sidecar.providers.openai import extract_chat
from policy_sidecar.providers.sse import Event, LineSplitter, SSEDecoder
from policy_sidecar.providers.units import request_quantity
from policy_sidecar.providers.window import (
    after_first_event,
    after_first_line,
    last_member_value,
    member_value,
    through_last_event,
    through_last_line,
)

REGISTRY = default_registry()
LIMIT = FULL_PARSE_LIMIT + TAIL_BYTES
CHAT_USAGE = {"prompt_tokens": 4242, "completion_tokens": 17, "total_tokens": 4259}


def _chat_json() -> JSONBodyParser:
    return JSONBodyParser(extract_chat, std_usage, ("usage",))


def _embedding_body(size: int, *, usage_first: bool) -> bytes:
    """A valid OpenAI embeddings answer of exactly ``size`` bytes, usage at one end."""
    usage = '"usage":' + json.dumps(CHAT_USAGE, separators=(",", ":"))
    shell = '{"object":"list",%s"data":[{"object":"embedding","index":0,"embedding":[%s]}]%s}'
    empty = (
        len(shell % (usage + ",", "", "")) if usage_first else len(shell % ("", "", "," + usage))
    )
    pad = size - empty - 1
    numbers = ("0.25," * (pad // 5 + 1))[:pad].rstrip(",").ljust(pad, " ")
    vector = numbers + "1"
    body = shell % (usage + ",", vector, "") if usage_first else shell % ("", vector, "," + usage)
    assert len(body) == size
    json.loads(body)
    return body.encode()


def _held(parser: JSONBodyParser) -> int:
    """The bytes the parser holds for its final parse."""
    return sum(len(chunk) for chunk in parser._chunks)


def _feed(parser: UsageParser, body: bytes, piece: int) -> Usage | None:
    for i in range(0, len(body), piece):
        parser.feed(body[i : i + piece])
    return parser.finish()


# -- JSONBodyParser: parsed whole up to the limit, from the tail beyond it -------------


def test_a_body_of_exactly_the_limit_is_parsed_whole() -> None:
    # The usage member sits at the start, outside any tail: only a whole parse finds it.
    body = _embedding_body(LIMIT, usage_first=True)
    assert _feed(_chat_json(), body, 64 * 1024) == Usage(4242, 17, 4259)
    assert _feed(_chat_json(), body, len(body)) == Usage(4242, 17, 4259)


def test_a_body_one_byte_over_the_limit_is_read_from_its_tail_only() -> None:
    # Usage at the start of a body over the limit is gone with the head: nothing is
    # reported (the head was dropped), and the parser held no more than the tail.
    body = _embedding_body(LIMIT + 1, usage_first=True)
    parser = _chat_json()
    assert _feed(parser, body, 64 * 1024) is None
    body = _embedding_body(LIMIT + 1, usage_first=False)
    assert _feed(_chat_json(), body, 64 * 1024) == Usage(4242, 17, 4259)


def test_the_tail_kept_is_the_last_bytes_even_when_the_usage_spans_chunks() -> None:
    # The chunk that crosses the limit splits the usage member: the kept tail joins the
    # chunks exactly (no separator between them) and keeps the end of the body.
    body = _embedding_body(LIMIT + 1, usage_first=False)
    parser = _chat_json()
    split = body.rindex(b"4242") + 2  # inside a number
    parser.feed(body[:split])
    parser.feed(body[split:])
    assert parser.finish() == Usage(4242, 17, 4259)


def test_a_large_body_keeps_only_its_tail_while_it_streams() -> None:
    body = _embedding_body(3 * LIMIT, usage_first=False)
    parser = _chat_json()
    held = 0
    drops = 0
    for i in range(0, len(body), 4096):
        parser.feed(body[i : i + 4096])
        assert _held(parser) <= LIMIT
        if _held(parser) < held:
            assert _held(parser) == TAIL_BYTES  # cut to the tail, then growing again
            drops += 1
        held = _held(parser)
    assert drops >= 2
    assert parser.finish() == Usage(4242, 17, 4259)


def test_the_last_usage_member_wins_and_a_key_that_is_a_value_is_skipped() -> None:
    # A cut array of chat completions (batch-like tail): the last "usage" is a string
    # value, not a member; the one before it is the last usage, not the first.
    tail = (
        b'"usage":{"prompt_tokens":1,"completion_tokens":1}},'
        b'{"id":"b","usage":{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70}},'
        b'{"id":"c","note":"usage"}]'
    )
    parser = _chat_json()
    parser.feed_window(b'[{"id":"a",', tail)
    assert parser.finish() == Usage(50, 20, 70)
    # The tail opens on the only whole usage member: it is found at offset 0.
    parser = _chat_json()
    parser.feed_window(b"[", b'"usage":{"prompt_tokens":9,"completion_tokens":3}},{"x":"usage"}]')
    assert parser.finish() == Usage(9, 3, 12)


def test_a_tail_cut_inside_a_utf8_character_still_gives_usage() -> None:
    text = "caf\u00e9 " * 10
    body = json.dumps({"text": text, "usage": CHAT_USAGE}, ensure_ascii=False).encode()
    cut = body.index("\u00e9".encode()) + 1  # the tail opens on a continuation byte
    parser = _chat_json()
    parser.feed_window(body[:10], body[cut:])
    assert parser.finish() == Usage(4242, 17, 4259)


def test_a_json_array_without_usage_reports_none() -> None:
    assert _feed(_chat_json(), b'[{"id":"a"},{"id":"b","usage":null}]', 1000) is None
    assert _feed(_chat_json(), b"[]", 1000) is None


# -- NDJSON (Cohere v1): usage in the head of a window ---------------------------------


def test_ndjson_usage_in_the_head_of_a_window_is_found() -> None:
    stream_end = (
        b'{"is_finished":true,"event_type":"stream-end","response":{"meta":'
        b'{"billed_units":{"input_tokens":31,"output_tokens":12}}}}\n'
    )
    head = b'{"is_finished":false,"event_type":"stream-start"}\n' + stream_end + b'{"is_fin'
    found = REGISTRY.match("POST", "/v1/chat")
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=True)
    parser.feed_window(head, b"ished\n")
    assert parser.finish() == Usage(31, 12, 43)


def test_ndjson_without_usage_reports_none() -> None:
    parser = NDJSONUsageParser(extract_chat, std_usage, ('"stream-end"',))
    parser.feed(b'{"event_type":"stream-end"}\n{"event_type":"stream-end","usage":{}}\n')
    assert parser.finish() is None


# -- SSE: last-wins keeps the last two candidates --------------------------------------


def _chat_chunk(prompt: int | None, completion: int = 3) -> bytes:
    usage = None if prompt is None else {"prompt_tokens": prompt, "completion_tokens": completion}
    return b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n"


def test_sse_last_wins_falls_back_to_the_one_before_a_malformed_last() -> None:
    parser = SSEUsageParser(extract_chat, std_usage, ('"prompt_tokens"',), merge=False)
    parser.feed(_chat_chunk(1) + _chat_chunk(2) + _chat_chunk(3))
    parser.feed(b'data: {"usage":{"prompt_tokens":9,"completion_tokens"\n\n')
    assert parser.finish() == Usage(3, 3, 6)


def test_sse_last_wins_takes_the_last_whole_usage() -> None:
    parser = SSEUsageParser(extract_chat, std_usage, ('"prompt_tokens"',), merge=False)
    parser.feed(_chat_chunk(1) + _chat_chunk(2) + _chat_chunk(3))
    assert parser.finish() == Usage(3, 3, 6)
    parser = SSEUsageParser(extract_chat, std_usage, ('"prompt_tokens"',), merge=False)
    parser.feed(_chat_chunk(5))
    assert parser.finish() == Usage(5, 3, 8)


def test_sse_events_without_the_needle_are_not_read() -> None:
    parser = SSEUsageParser(extract_chat, std_usage, ('"prompt_tokens"',), merge=False)
    # Usage spelled without the needle (a provider that renamed its field) is skipped.
    parser.feed(b'data: {"usage":{"completion_tokens":3}}\n\n')
    assert parser.finish() is None


# -- Gemini streams: the framing sniffed from the first non-blank byte -----------------


def test_sniffing_waits_for_a_non_blank_byte() -> None:
    found = REGISTRY.match("POST", "/v1beta/models/g:streamGenerateContent")
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=True)
    parser.feed(b"  \r\n")
    parser.feed(b"\n[{")
    parser.feed(b'"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6}}]')
    assert parser.finish() == Usage(9, 6, 15)


def test_sniffing_a_window_picks_the_framing_from_the_head() -> None:
    found = REGISTRY.match("POST", "/v1beta/models/g:streamGenerateContent")
    assert found is not None
    provider, route = found
    sse_tail = b'\n\ndata: {"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6}}\n\n'
    parser = provider.usage_parser(route, streaming=True)
    parser.feed_window(b'\n data: {"candidates":[]}\n\n', sse_tail)
    assert parser.finish() == Usage(9, 6, 15)
    # Read as SSE, not by key: a last event cut inside its data is skipped whole.
    cut = b'data: {"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":7},"x\n\n'
    parser = provider.usage_parser(route, streaming=True)
    parser.feed_window(b'data: {"candidates":[]}\n\n', sse_tail + cut)
    assert parser.finish() == Usage(9, 6, 15)
    array_tail = b'},{"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":6}}]'
    for opening in (b"[", b"{"):
        parser = provider.usage_parser(route, streaming=True)
        parser.feed_window(b" \n" + opening + b'{"candidates":', array_tail)
        assert parser.finish() == Usage(9, 6, 15)
    parser = provider.usage_parser(route, streaming=True)
    parser.feed_window(b" \r\n", sse_tail)  # a blank head: no framing, no usage
    assert parser.finish() is None
    assert SniffingParser(_chat_json, _chat_json).finish() is None


# -- token counting answers ------------------------------------------------------------


def test_count_tokens_answers_count_one_request() -> None:
    parser = CountTokensParser("input_tokens")
    parser.feed(b'{"input_')
    parser.feed(b'tokens": 2095}')
    assert parser.finish() == Usage(unit="requests", quantity=1.0)
    parser = CountTokensParser("input_tokens")
    parser.feed_window(b'{"input_tok', b'ens": 2095}')
    assert parser.finish() == Usage(unit="requests", quantity=1.0)
    for body in (b'{"type":"error"}', b"[1]", b"not json", b'"input_tokens"'):
        parser = CountTokensParser("input_tokens")
        parser.feed(body)
        assert parser.finish() is None, body


# -- fields and totals -----------------------------------------------------------------


def test_int_fields_keeps_integers_only() -> None:
    mapping = {"a": "x", "b": "y", "c": "z", "d": "w"}
    assert int_fields({"a": 3, "b": True, "c": 2.0, "d": "4"}, mapping) == {"x": 3}
    assert int_fields([("a", 3)], mapping) == {}


def test_std_usage_needs_prompt_or_completion_and_follows_the_providers_total() -> None:
    assert std_usage({"total": 9}) is None
    assert std_usage({"completion": 4}) == Usage(0, 4, 4)
    assert std_usage({"prompt": 5}) == Usage(5, 0, 5)
    raw = {"prompt": 5, "completion": 4, "total": 11, "cached": 2, "reasoning": 1}
    assert std_usage(raw) == Usage(5, 4, 11, 2, 1)


# -- window cuts -----------------------------------------------------------------------


def test_line_cuts_in_heads_and_tails() -> None:
    assert through_last_line(b"a\nb\nc") == b"a\nb\n"
    assert through_last_line(b"a\rb\rc") == b"a\rb\r"
    assert through_last_line(b"a\r\nb\r\nc") == b"a\r\nb\r\n"
    assert through_last_line(b"no break") == b""
    assert after_first_line(b"a\nb\nc") == b"b\nc"
    assert after_first_line(b"a\rb\rc") == b"b\rc"
    assert after_first_line(b"a\nb\rc") == b"b\rc"
    assert after_first_line(b"a\rb\nc") == b"b\nc"
    assert after_first_line(b"no break") == b""


def test_event_cuts_in_heads_and_tails() -> None:
    assert through_last_event(b"data: a\n\ndata: b\n\ndata: c") == b"data: a\n\ndata: b\n\n"
    assert through_last_event(b"data: a\r\rdata: b") == b"data: a\r\r"
    assert through_last_event(b"data: a\r\n\ndata: b\n\r\ndata") == b"data: a\r\n\ndata: b\n\r\n"
    assert after_first_event(b"x\n\ndata: a\n\ndata: b") == b"data: a\n\ndata: b"
    assert after_first_event(b"x\r\rdata: a\n\n") == b"data: a\n\n"
    assert after_first_event(b"x\r\n\r\ndata: a\n\n") == b"data: a\n\n"
    assert after_first_event(b"x\r\n\ndata: a") == b"data: a"
    assert after_first_event(b"x\n\r\ndata: a") == b"data: a"


def test_member_values_in_a_cut_tail() -> None:
    text = '"usage" : \t{"a": 1}, "s": "usage", "n":\n 7'
    assert member_value(text, len('"usage"')) == {"a": 1}
    assert member_value(text, text.index('"n"') + 3) == 7
    assert member_value('"k"', 3) is not None  # nothing follows: MISSING, not None
    assert member_value('"k"', 3) is member_value('"k": [1,', 3)
    assert member_value('"k" x', 3) is member_value('"k"', 3)
    assert last_member_value('{"meta": {"a": 1}, "x": "meta", "meta": {"b"', "meta") == {"a": 1}
    both = '{"meta": {"a": 1}, "meta": {"c": 3}, "x": "meta"}'
    assert last_member_value(both, "meta") == {"c": 3}  # the last whole one, not the first
    assert last_member_value('"meta": {"a": 1}, "x": "meta"}', "meta") == {"a": 1}
    assert last_member_value('"meta": 2', "meta") == 2
    assert member_value('"k" 77', 3) is member_value('"k"', 3)  # no colon: no member
    assert member_value('"k":', 3) is member_value('"k"', 3)
    assert member_value('"k":  ', 3) is member_value('"k"', 3)
    assert last_member_value('{"meta": 5}', "other") is None
    assert last_member_value("", "meta") is None
    deep = '"meta": ' + "[" * 100_000
    assert last_member_value(deep, "meta") is None


# -- line and event framing ------------------------------------------------------------


def test_a_crlf_split_between_chunks_is_one_line_break() -> None:
    lines = LineSplitter()
    assert lines.feed(b"a\r") == [b"a"]
    assert lines.feed(b"\n") == []  # the LF of that CR, alone in its chunk
    assert lines.feed(b"\n") == [b""]  # a second LF is a blank line
    assert lines.feed(b"b\r") == [b"b"]
    assert lines.feed(b"\nc\n") == [b"c"]
    assert lines.feed(b"") == []
    assert lines.buffered == 0
    assert lines.feed(b"de") == []
    assert lines.buffered == 2
    assert lines.feed(b"f") == []
    assert lines.buffered == 3
    assert lines.feed(b"\ng") == [b"def"]
    assert lines.buffered == 1
    assert lines.close() == [b"g"]
    assert lines.buffered == 0
    assert lines.close() == []


def test_an_over_long_line_is_dropped_up_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("policy_sidecar.providers.sse.MAX_LINE", 10)
    lines = LineSplitter()
    assert lines.feed(b"0123456789") == []  # exactly the cap: still kept
    assert lines.buffered == 10
    assert lines.feed(b"\n") == [b"0123456789"]
    assert lines.feed(b"0123456789a") == []  # over the cap
    assert lines.buffered == 0
    assert lines.feed(b"bc") == []
    assert lines.buffered == 0
    assert lines.feed(b"d\ne\nf") == [b"e"]
    assert lines.close() == [b"f"]
    assert lines.feed(b"0123456789abc") == []
    assert lines.close() == []  # the end of an over-long line is not a line


def _decoded(decoder: SSEDecoder, *chunks: bytes) -> list[Event]:
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_sse_fields() -> None:
    decoder = SSEDecoder()
    got = _decoded(decoder, b"event: ping\n\n", b"data\n\n", b"data:x\nevent: e\nid: 1\n\n")
    assert got == [Event("ping", ""), Event("", ""), Event("e", "x")]
    assert decoder.buffered == 0
    assert _decoded(decoder, b"event: only\n") == []
    assert decoder.buffered == 0
    assert _decoded(decoder, b"data: abc\n") == []
    assert decoder.buffered == 4
    assert _decoded(decoder, b"data: de") == []
    assert decoder.buffered == 4 + 8
    assert list(decoder.close()) == [Event("only", "abc\nde")]
    decoder = SSEDecoder()
    assert _decoded(decoder, b"event: x\n") == []
    assert list(decoder.close()) == []  # an event name alone, never ended: nothing


def test_an_over_long_event_is_dropped_up_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("policy_sidecar.providers.sse.MAX_EVENT", 10)
    decoder = SSEDecoder()
    assert _decoded(decoder, b"data: 123456789\n\n") == [Event("", "123456789")]  # 10: kept
    assert _decoded(decoder, b"event: big\ndata: 1234\ndata: 56789\n") == []
    assert decoder.buffered == 0
    assert _decoded(decoder, b"data: more\n") == []
    assert decoder.buffered == 0
    assert _decoded(decoder, b"event: next\n\ndata: ok\n\n") == [Event("", "ok")]


# -- units, unmetered endpoints, the registry ------------------------------------------


def test_the_response_price_key_wins_else_the_requests() -> None:
    args = {"unit": "images", "quantity": 2.0, "estimated": False, "ok": True}
    own = Usage(unit="images", quantity=1.0, price_key="1024x1024/hd")
    assert request_quantity(own, price_key="512x512/standard", **args) == own  # type: ignore[arg-type]
    assert request_quantity(Usage(quantity=1.0), price_key="512x512/standard", **args) == Usage(  # type: ignore[arg-type]
        unit="images", quantity=1.0, price_key="512x512/standard"
    )
    assert request_quantity(own, price_key=None, **args) == own  # type: ignore[arg-type]


def test_unmetered_patterns_ignore_case() -> None:
    pattern = unmetered._re(r"/v1/batches(/.*)?")
    assert pattern.fullmatch("/V1/Batches/b1") is not None
    assert pattern.fullmatch("/v1/batchesx") is None
    assert all(route.pattern.flags & re.IGNORECASE for route in unmetered.NOT_METERED)


def test_the_registry_asks_each_provider_in_turn() -> None:
    assert REGISTRY.names == ("openai", "azure", "anthropic", "gemini", "cohere")
    assert [REGISTRY.get(name).name for name in REGISTRY.names] == list(REGISTRY.names)
    found = REGISTRY.match("POST", "/V1/%63hat/completions/")
    assert found is not None and found[1] == Route("openai", "chat")
    assert REGISTRY.match("POST", "/v3/unknown") is None
    with pytest.raises(KeyError):
        REGISTRY.get("mistral")
    fresh = default_registry()  # built here, not at import
    assert fresh.get("gemini").name == "gemini"
    assert fresh.names == REGISTRY.names


@pytest.mark.parametrize(
    ("content_type", "stream_path", "streaming"),
    [
        ("Text/Event-Stream; charset=utf-8", False, True),
        ("application/x-ndjson", False, True),
        ("application/stream+json", False, True),
        ("application/jsonl", False, True),
        ("application/json", False, False),
        ("application/json; charset=UTF-8", True, True),
        (None, True, True),
        ("text/plain", True, False),
        (None, False, False),
    ],
)
def test_streams_by_content_type_or_path(
    content_type: str | None, stream_path: bool, streaming: bool
) -> None:
    route = Route("gemini", "generate", stream_from_path=stream_path)
    assert is_streaming_response(route, content_type) is streaming
