"""Content-encoding for usage parsers: gzip and deflate decoded incrementally.

The lead strips ``accept-encoding`` on the request so upstreams normally answer
identity; this wrapper is the safety net when one compresses anyway.
"""

from __future__ import annotations

import zlib

from policy_sidecar.providers.base import Usage, UsageParser

# Bounds the work when a small compressed body inflates to something huge: past this
# many inflated bytes the response reports no usage.
MAX_INFLATED = 64 * 1024 * 1024
# Inflated at most this much at a time, so memory stays bounded whatever one chunk
# inflates to (a 160 KB chunk of a gzip bomb is 160 MB inflated).
PIECE = 64 * 1024


class DecodingParser:
    """Inflates chunks before handing them on. One per response; not thread-safe."""

    __slots__ = ("_failed", "_inflated", "_inner", "_zlib")

    def __init__(self, inner: UsageParser, encoding: str) -> None:
        self._inner = inner
        # 16 + MAX_WBITS: gzip header; MAX_WBITS: zlib-wrapped deflate (what servers send).
        wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)
        self._failed = False
        self._inflated = 0

    @property
    def inflated(self) -> int:
        """Bytes inflated so far (never more than `MAX_INFLATED` + `PIECE`)."""
        return self._inflated

    def feed(self, chunk: bytes) -> None:
        data = chunk
        while data and not self._failed:
            try:
                piece = self._zlib.decompress(data, PIECE)
            except zlib.error:
                self._failed = True
                return
            if not self._take(piece):
                return
            data = self._zlib.unconsumed_tail

    def feed_window(self, head: bytes, tail: bytes) -> None:
        # A compressed tail cannot be inflated without what came before it.
        self._failed = True

    def finish(self) -> Usage | None:
        if self._failed:
            return None
        try:
            tail = self._zlib.flush()  # what the last input held back: less than a piece
        except zlib.error:
            return None
        if not self._take(tail):
            return None
        return self._inner.finish()

    def _take(self, piece: bytes) -> bool:
        self._inflated += len(piece)
        if self._inflated > MAX_INFLATED:
            self._failed = True
            return False
        if piece:
            self._inner.feed(piece)
        return True


class NoUsageParser:
    """For encodings we cannot decode (br, zstd): reports no usage, never raises."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> None:
        return None

    def feed_window(self, head: bytes, tail: bytes) -> None:
        return None

    def finish(self) -> Usage | None:
        return None


def with_encoding(parser: UsageParser, content_encoding: str | None) -> UsageParser:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return parser
    if encoding in ("gzip", "x-gzip", "deflate"):
        return DecodingParser(parser, encoding)
    return NoUsageParser()
