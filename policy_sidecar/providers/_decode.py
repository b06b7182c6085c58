"""Content-encoding for usage parsers: gzip and deflate decoded incrementally.

The lead strips ``accept-encoding`` on the request so upstreams normally answer
identity; this wrapper is the safety net when one compresses anyway.
"""

from __future__ import annotations

import zlib

from policy_sidecar.providers.base import Usage, UsageParser

# Bounds memory when a small compressed body inflates to something huge.
_MAX_INFLATED = 64 * 1024 * 1024


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

    def feed(self, chunk: bytes) -> None:
        if self._failed:
            return
        try:
            data = self._zlib.decompress(chunk)
        except zlib.error:
            self._failed = True
            return
        self._inflated += len(data)
        if self._inflated > _MAX_INFLATED:
            self._failed = True
            return
        if data:
            self._inner.feed(data)

    def finish(self) -> Usage | None:
        if self._failed:
            return None
        try:
            tail = self._zlib.flush()
        except zlib.error:
            return None
        if tail:
            self._inner.feed(tail)
        return self._inner.finish()


class NoUsageParser:
    """For encodings we cannot decode (br, zstd): reports no usage, never raises."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> None:
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
