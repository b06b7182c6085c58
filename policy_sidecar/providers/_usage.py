"""Generic usage parsers; each provider supplies how to find and read its usage fields.

A provider gives an ``extract`` function (decoded JSON object → the raw usage fields it
carries, or None) and a ``to_usage`` function (raw fields → Usage). Raw fields are a flat
``dict[str, int]`` so that streams which spread usage over several events (Anthropic) can
merge them field by field. None of these parsers raises on malformed input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policy_sidecar.providers import fastjson
from policy_sidecar.providers.base import Usage, UsageParser
from policy_sidecar.providers.sse import LineSplitter, SSEDecoder
from policy_sidecar.providers.window import (
    MISSING,
    after_first_event,
    after_first_line,
    last_event_end,
    member_value,
    through_last_event,
    through_last_line,
)

Raw = dict[str, int]
Extract = Callable[[Any], "Raw | None"]
ToUsage = Callable[[Raw], "Usage | None"]

# Bodies up to this size are parsed whole; larger ones (big embedding responses) keep
# only their tail and the usage object is found by key near the end, so finishing a
# 100 MB body costs a small decode instead of a 100 MB one on the event loop.
FULL_PARSE_LIMIT = 1024 * 1024
TAIL_BYTES = 64 * 1024


def _loads(data: bytes | str) -> Any:
    try:
        return fastjson.loads(data)
    except (ValueError, RecursionError):
        return None


class CountTokensParser:
    """A token-count answer (Anthropic ``{"input_tokens": N}``, Gemini
    ``{"totalTokens": N, …}``, from their API references): one free request when the
    answer carries ``key``; an error body reports nothing."""

    __slots__ = ("_chunks", "_key")

    def __init__(self, key: str) -> None:
        self._key = key
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        # A real count answer is a few bytes: this only happens to odd bodies, which
        # are judged by what the two ends make together.
        self._chunks = [head + tail]

    def finish(self) -> Usage | None:
        found = _loads(b"".join(self._chunks))
        if not isinstance(found, dict) or self._key not in found:
            return None
        return Usage(unit="requests", quantity=1.0)


class JSONBodyParser:
    """Buffers a JSON body (object, or array of objects: last usage wins)."""

    __slots__ = ("_chunks", "_extract", "_size", "_tail_keys", "_to_usage", "_truncated")

    def __init__(self, extract: Extract, to_usage: ToUsage, tail_keys: tuple[str, ...]) -> None:
        self._extract = extract
        self._to_usage = to_usage
        self._tail_keys = tail_keys
        self._chunks: list[bytes] = []
        self._size = 0
        self._truncated = False

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > FULL_PARSE_LIMIT + TAIL_BYTES:
            tail = b"".join(self._chunks)[-TAIL_BYTES:]
            self._chunks = [tail]
            self._size = len(tail)
            self._truncated = True

    def feed_window(self, head: bytes, tail: bytes) -> None:
        # The usage member is found by key in the tail (`_tail` resynchronises there).
        self._chunks = [tail]
        self._size = len(tail)
        self._truncated = True

    def finish(self) -> Usage | None:
        body = b"".join(self._chunks)
        self._chunks = []
        raw = self._tail(body) if self._truncated else self._whole(body)
        return self._to_usage(raw) if raw else None

    def _whole(self, body: bytes) -> Raw | None:
        obj = _loads(body)
        if isinstance(obj, list):
            found: Raw | None = None
            for item in obj:
                found = self._extract(item) or found
            return found
        return self._extract(obj)

    def _tail(self, body: bytes) -> Raw | None:
        text = body.decode("utf-8", "replace")
        for key in self._tail_keys:
            needle = f'"{key}"'
            at = text.rfind(needle)
            # The last occurrence may be cut short (a body cut by the client): earlier
            # ones are tried, back to the first, before the next key.
            while at >= 0:
                raw = self._member(text, key, at + len(needle))
                if raw:
                    return raw
                at = text.rfind(needle, 0, at)
        return None

    def _member(self, text: str, key: str, after: int) -> Raw | None:
        value = member_value(text, after)
        if value is MISSING:
            return None  # not a member name (e.g. a string value that equals the key)
        return self._extract({key: value})


class SSEUsageParser:
    """SSE stream; events whose data lacks every needle are skipped without decoding.

    Last-wins streams (every provider but Anthropic) keep only the raw text of the last
    two candidate events and decode at ``finish``: Gemini repeats usageMetadata on every
    chunk, so decoding each one would cost a JSON parse per chunk for nothing. The second
    to last is the fallback if the last turns out to be malformed.

    Bytes fed between two events are not decoded up to the event that holds the first
    needle: whole events without one are skipped as they would be after decoding (a
    needle holds no line break, so it is in the raw bytes of any event whose data holds
    it). A 200-chunk stream's head and tail hold ~25 events; the usage is in one or two.
    """

    __slots__ = (
        "_decoder",
        "_extract",
        "_last",
        "_merge",
        "_needle_bytes",
        "_needles",
        "_raw",
        "_to_usage",
    )

    def __init__(
        self, extract: Extract, to_usage: ToUsage, needles: tuple[str, ...], *, merge: bool
    ) -> None:
        if any("\n" in n or "\r" in n for n in needles):
            raise ValueError("an SSE needle cannot hold a line break")
        self._decoder = SSEDecoder()
        self._extract = extract
        self._to_usage = to_usage
        self._needles = needles
        self._needle_bytes = tuple(n.encode() for n in needles)
        # merge: later events update fields one by one; otherwise the last usage wins.
        self._merge = merge
        self._raw: Raw = {}
        self._last: list[str] = []

    def feed(self, chunk: bytes) -> None:
        if self._decoder.idle:
            chunk = chunk[self._skippable(chunk) :]
        for event in self._decoder.feed(chunk):
            self._data(event.data)

    def _skippable(self, chunk: bytes) -> int:
        """How many bytes at the start of ``chunk`` (fed between two events) are whole
        events that hold no needle."""
        first = len(chunk)
        for needle in self._needle_bytes:
            at = chunk.find(needle)
            if 0 <= at < first:
                first = at
        return last_event_end(chunk, first)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        self.feed(through_last_event(head))
        self.feed(after_first_event(tail))

    def finish(self) -> Usage | None:
        for event in self._decoder.close():
            self._data(event.data)
        if not self._merge:
            for data in reversed(self._last):
                raw = self._extract(_loads(data))
                if raw:
                    self._raw = raw
                    break
        return self._to_usage(self._raw) if self._raw else None

    def _data(self, data: str) -> None:
        if not any(needle in data for needle in self._needles):
            return
        if not self._merge:
            self._last = [self._last[-1], data] if self._last else [data]
            return
        raw = self._extract(_loads(data))
        if raw:
            self._raw.update(raw)


class NDJSONUsageParser:
    """Newline-delimited JSON stream (Cohere v1); the last usage wins."""

    __slots__ = ("_extract", "_lines", "_needles", "_raw", "_to_usage")

    def __init__(self, extract: Extract, to_usage: ToUsage, needles: tuple[str, ...]) -> None:
        self._lines = LineSplitter()
        self._extract = extract
        self._to_usage = to_usage
        self._needles = tuple(n.encode() for n in needles)
        self._raw: Raw = {}

    def feed(self, chunk: bytes) -> None:
        for line in self._lines.feed(chunk):
            self._line(line)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        self.feed(through_last_line(head))
        self.feed(after_first_line(tail))

    def finish(self) -> Usage | None:
        for line in self._lines.close():
            self._line(line)
        return self._to_usage(self._raw) if self._raw else None

    def _line(self, line: bytes) -> None:
        if not any(needle in line for needle in self._needles):
            return
        raw = self._extract(_loads(line))
        if raw:
            self._raw = raw


class SniffingParser:
    """Picks JSON-array or SSE framing from the first non-blank byte (Gemini streams).

    ``streamGenerateContent`` answers SSE with ``alt=sse`` and a JSON array without it.
    """

    __slots__ = ("_inner", "_json", "_pending", "_sse")

    def __init__(
        self, json_factory: Callable[[], UsageParser], sse_factory: Callable[[], UsageParser]
    ) -> None:
        self._json = json_factory
        self._sse = sse_factory
        self._inner: UsageParser | None = None
        self._pending: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        if self._inner is None:
            self._pending.append(chunk)
            head = b"".join(self._pending).lstrip()
            if not head:
                return
            self._inner = self._json() if head[:1] in (b"[", b"{") else self._sse()
            chunk = b"".join(self._pending)
            self._pending = []
        self._inner.feed(chunk)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        first = head.lstrip()[:1]
        if not first:
            return
        self._inner = self._json() if first in (b"[", b"{") else self._sse()
        self._inner.feed_window(head, tail)

    def finish(self) -> Usage | None:
        return self._inner.finish() if self._inner is not None else None


def count_sum(*parts: int) -> int:
    """The sum of reported token counts; -1 when one is negative: a sum must not hide a
    bogus part (``-1000 + 5000`` looks sane), so the clamp rejects it
    (`usage.clamp`: a rejected count is charged what the sidecar knows)."""
    return sum(parts) if min(parts, default=0) >= 0 else -1


def int_fields(obj: Any, mapping: dict[str, str]) -> Raw:
    """The integer fields of ``obj`` named in ``mapping`` (wire name → raw name)."""
    out: Raw = {}
    if isinstance(obj, dict):
        for wire, name in mapping.items():
            value = obj.get(wire)
            if isinstance(value, int) and not isinstance(value, bool):
                out[name] = value
    return out


def std_usage(raw: Raw) -> Usage | None:
    """Raw fields named prompt/completion/total/cached/reasoning → Usage.

    Needs at least prompt or completion; a missing total is their sum.
    """
    if "prompt" not in raw and "completion" not in raw:
        return None
    prompt = raw.get("prompt", 0)
    completion = raw.get("completion", 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=raw.get("total", prompt + completion),
        cached_tokens=raw.get("cached", 0),
        reasoning_tokens=raw.get("reasoning", 0),
    )
