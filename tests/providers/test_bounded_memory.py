"""Response parsing keeps memory bounded: a gzip bomb and an SSE event that never ends.

Asserted on what the decoders hold and inflate (which stop at their caps), not on the
process's memory.
"""

from __future__ import annotations

import zlib

from policy_sidecar.providers import Usage
from policy_sidecar.providers._decode import MAX_INFLATED, PIECE, DecodingParser
from policy_sidecar.providers.sse import MAX_EVENT, MAX_LINE, Event, SSEDecoder

MB = 1024 * 1024


class Recording:
    """An inner parser that remembers the largest piece it was fed and the total."""

    def __init__(self) -> None:
        self.largest = 0
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.largest = max(self.largest, len(chunk))
        self.total += len(chunk)

    def finish(self) -> Usage | None:
        return Usage(1, 1, 2)


def gzip_bomb(inflated_mb: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MB)
    return b"".join(packer.compress(zeros) for _ in range(inflated_mb)) + packer.flush()


def test_gzip_bomb_inflates_piece_by_piece_and_stops_at_the_cap() -> None:
    bomb = gzip_bomb(160)
    assert len(bomb) < 200 * 1024  # ~160 KB on the wire
    inner = Recording()
    parser = DecodingParser(inner, "gzip")
    parser.feed(bomb)  # one chunk: inflating it whole would hold 160 MB at once
    assert inner.largest <= PIECE
    assert parser.inflated <= MAX_INFLATED + PIECE
    assert inner.total <= MAX_INFLATED
    assert parser.finish() is None  # over the cap: no usage, and no more inflating
    parser.feed(bomb)
    assert parser.inflated <= MAX_INFLATED + PIECE


def test_deflate_body_under_the_cap_is_fed_whole_in_pieces() -> None:
    body = b'{"usage": 1}' + b" " * (3 * MB)
    inner = Recording()
    packed = zlib.compress(body, 9)
    parser = DecodingParser(inner, "deflate")
    parser.feed(packed)
    assert parser.finish() == Usage(1, 1, 2)
    assert inner.total == len(body)
    assert inner.largest <= PIECE


def test_sse_data_lines_without_a_blank_line_stay_bounded() -> None:
    decoder = SSEDecoder()
    line = b"data: " + b"x" * 1000 + b"\n"
    chunk = line * 1024  # ~1 MB per chunk, 50 MB in all, never a blank line
    peak = 0
    for _ in range(50):
        assert list(decoder.feed(chunk)) == []
        peak = max(peak, decoder.buffered)
    assert peak <= MAX_EVENT + len(chunk)
    # The over-long event is dropped; the stream goes on and the next event is intact.
    assert list(decoder.feed(b'\ndata: {"usage": 7}\n\n')) == [Event("", '{"usage": 7}')]
    assert decoder.buffered == 0


def test_sse_line_without_terminator_stays_bounded() -> None:
    decoder = SSEDecoder()
    for _ in range(MAX_LINE // MB + 4):
        assert list(decoder.feed(b"x" * MB)) == []
        assert decoder.buffered <= MAX_LINE
    assert list(decoder.feed(b"\ndata: ok\n\n")) == [Event("", "ok")]
