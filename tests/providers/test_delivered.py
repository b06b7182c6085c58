"""Delivered text of responses, and what a response without a usage report is charged."""

from __future__ import annotations

from typing import Any

import pytest

from policy_sidecar.extproc.charging import estimated_usage
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.providers import Usage, default_registry
from policy_sidecar.tokens import count_text, load_encoding
from policy_sidecar.tokens.delivered import BYTES_PER_TOKEN, DeliveredText, estimate_completion

ENC = load_encoding("o200k_base")
TEXT = 'The quick "brown" fox\njumps — über the lazy dog.'
MESSAGES = [{"role": "user", "content": "hi"}]
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
STREAMS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": True}),
    ("/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}),
    ("/v1/messages", {"model": "claude", "max_tokens": 5, "messages": MESSAGES, "stream": True}),
    ("/v2/chat", {"model": "command-r", "messages": MESSAGES, "stream": True}),
    ("/v1/chat", {"model": "command-r", "message": "hi", "stream": True}),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", GEMINI),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent", GEMINI),
    ("/openai/deployments/d/chat/completions?api-version=2024-10-21",
     {"messages": MESSAGES, "stream": True}),
]  # fmt: skip


def chunks(path: str, body: dict[str, Any]) -> list[bytes]:
    matched = default_registry().match("POST", path)
    assert matched is not None
    return list(build_response(matched[1], body, Usage(9, 5, 14), text=TEXT).chunks)


@pytest.mark.parametrize(("path", "body"), STREAMS)
def test_every_providers_stream_yields_its_text_once(path: str, body: dict[str, Any]) -> None:
    data = b"".join(chunks(path, body))
    whole, bytewise = DeliveredText(), DeliveredText()
    whole.feed(data)
    for i in range(len(data)):  # split anywhere, even inside a UTF-8 character
        bytewise.feed(data[i : i + 1])
    for d in (whole, bytewise):
        d.finish()
        assert d.text() == TEXT
        assert d.chars == len(TEXT)


def test_a_cut_stream_yields_what_was_delivered() -> None:
    sent = chunks(*STREAMS[0])
    d = DeliveredText()
    for c in sent[:3]:  # role chunk and the first two pieces of text
        d.feed(c)
    d.finish()
    assert d.recognised
    assert 0 < d.chars < len(TEXT)
    assert TEXT.startswith(d.text())


@pytest.mark.parametrize(
    ("text", "max_tokens", "expected"),
    [
        (TEXT, None, count_text(ENC, TEXT)),
        (TEXT, 3, 3),  # never more than the request allowed
        ("", None, 0),  # recognised, but empty (only the role chunk arrived)
    ],
)
def test_estimate_from_text(text: str, max_tokens: int | None, expected: int) -> None:
    d = DeliveredText()
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    d.feed(f'data: {{"delta":{{"content":"{escaped}"}}}}\n\n'.encode())
    got = estimate_completion(d, response_bytes=10_000, encoding=ENC, max_tokens=max_tokens)
    assert got == expected


def test_estimate_from_bytes_when_nothing_is_recognised() -> None:
    d = DeliveredText()
    d.feed(b"\x00\x01 binary framing nobody knows\n")
    assert not d.recognised
    got = estimate_completion(d, response_bytes=4001, encoding=ENC, max_tokens=None)
    assert got == -(-4001 // BYTES_PER_TOKEN)


def test_long_text_is_extrapolated_past_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("policy_sidecar.tokens.delivered.MAX_TEXT_CHARS", 100)
    d = DeliveredText()
    for _ in range(50):
        d.feed(b'data: {"delta":{"content":"word word word word "}}\n')
    assert len(d.text()) == 100
    assert d.chars == 1000
    got = estimate_completion(d, response_bytes=0, encoding=ENC, max_tokens=None)
    assert got == pytest.approx(count_text(ENC, "word " * 200), rel=0.05)


def delivered(text: str) -> DeliveredText:
    d = DeliveredText()
    d.feed(f'data: {{"delta":{{"content":"{text}"}}}}\n'.encode())
    return d


FOUR = delivered("one two three four")  # 4 tokens


@pytest.mark.parametrize(
    ("reported", "complete", "streamed", "status", "operation", "expected"),
    [
        # Cut short without a report: prompt estimate + delivered completion.
        (None, False, True, 200, "chat", Usage(50, 4, 54)),
        # Cut before the response began: the prompt estimate, nothing delivered.
        (None, False, False, 0, "chat", Usage(50, 0, 50)),
        # A complete stream that sent no usage chunk.
        (None, True, True, 200, "chat", Usage(50, 4, 54)),
        # A complete report is kept.
        (Usage(40, 9, 49), True, True, 200, "chat", None),
        # A partial report (Anthropic's message_start) is raised to what was delivered...
        (Usage(40, 1, 41, cached_tokens=8), False, True, 200, "chat", Usage(40, 4, 44, 8)),
        # ...unless it already says more.
        (Usage(40, 9, 49), False, True, 200, "chat", None),
        # Errors, complete JSON bodies and embeddings are charged no delivered output.
        (None, False, True, 500, "chat", None),
        (None, True, False, 200, "chat", None),
        (None, False, False, 200, "embeddings", Usage(50, 0, 50)),
        # Gemini embeddings report no usage at all: a complete 2xx is the prompt estimate.
        (None, True, False, 200, "embed", Usage(50, 0, 50)),
        (None, True, False, 200, "batch_embed", Usage(50, 0, 50)),
        (None, True, False, 400, "batch_embed", None),
        (Usage(12, 0, 12), True, False, 200, "embed", None),
    ],
)
def test_what_a_response_without_usage_is_charged(
    reported: Usage | None,
    complete: bool,
    streamed: bool,
    status: int,
    operation: str,
    expected: Usage | None,
) -> None:
    got = estimated_usage(
        reported,
        complete=complete,
        streamed=streamed,
        status=status,
        operation=operation,
        estimated_prompt=50,
        max_tokens=80,
        delivered=FOUR if streamed else None,
        response_bytes=0 if status == 0 else 400,
        encoding=ENC,
    )
    assert got == expected


def test_a_json_body_cut_short_is_charged_by_its_bytes() -> None:
    got = estimated_usage(
        None,
        complete=False,
        streamed=False,
        status=200,
        operation="chat",
        estimated_prompt=50,
        max_tokens=None,
        delivered=None,
        response_bytes=400,
        encoding=ENC,
    )
    assert got == Usage(50, 400 // BYTES_PER_TOKEN, 50 + 400 // BYTES_PER_TOKEN)


def test_the_last_line_without_a_newline_is_read_at_the_end() -> None:
    d = DeliveredText()
    d.feed(b'{"choices":[{"message":{"content":"all of it"}}]}')  # a JSON body, no newline
    assert d.text() == ""
    d.finish()
    assert d.text() == "all of it"


def test_invalid_utf8_in_the_text_is_replaced_not_fatal() -> None:
    d = DeliveredText()
    d.feed(b'data: {"delta":{"content":"caf\xc3 ok"}}\n')
    assert d.text() == "caf\ufffd ok"


def test_a_request_allowing_no_output_is_charged_none() -> None:
    got = estimate_completion(FOUR, response_bytes=100, encoding=ENC, max_tokens=0)
    assert got == 0
