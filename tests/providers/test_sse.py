"""SSE and line framing, chunk boundaries anywhere."""

from __future__ import annotations

import pytest

from policy_sidecar.providers.sse import Event, LineSplitter, SSEDecoder


def _events(*chunks: bytes) -> list[Event]:
    decoder = SSEDecoder()
    out = [e for chunk in chunks for e in decoder.feed(chunk)]
    return out + list(decoder.close())


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ((b"data: a\n\n",), [Event("", "a")]),
        ((b"data:a\n\n",), [Event("", "a")]),
        ((b"data:  two spaces\n\n",), [Event("", " two spaces")]),
        ((b"event: x\ndata: 1\ndata: 2\n\n",), [Event("x", "1\n2")]),
        ((b": keep-alive\n\n", b"data: a\n\n"), [Event("", "a")]),
        ((b"data: a\r", b"\n\r\n"), [Event("", "a")]),
        ((b"data: a\r", b"", b"\ndata: b\r\n\r\n"), [Event("", "a\nb")]),
        ((b"data: a\r\rdata: b\r\r",), [Event("", "a"), Event("", "b")]),
        ((b"data: caf\xc3", b"\xa9\n\n"), [Event("", "caf\u00e9")]),
        ((b"data: unterminated",), [Event("", "unterminated")]),
        ((b"data: [DONE]\n\n",), [Event("", "[DONE]")]),
        ((b"retry: 10\nid: 5\n\n",), []),
    ],
)
def test_sse_decoder(chunks: tuple[bytes, ...], expected: list[Event]) -> None:
    assert _events(*chunks) == expected


def test_line_splitter_keeps_partial_lines() -> None:
    lines = LineSplitter()
    assert lines.feed(b"ab") == []
    assert lines.feed(b"c\nde") == [b"abc"]
    assert lines.feed(b"f\r") == [b"def"]
    assert lines.feed(b"\n") == []
    assert lines.feed(b"g") == []
    assert lines.close() == [b"g"]


def test_over_long_line_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("policy_sidecar.providers.sse.MAX_LINE", 10)
    lines = LineSplitter()
    assert lines.feed(b"0123456") == []
    assert lines.feed(b"789abcdef") == []  # over the cap: dropped
    assert lines.feed(b"more") == []
    assert lines.feed(b"\nok\n") == [b"ok"]
    assert lines.close() == []
