"""Incremental line and Server-Sent Events framing: bytes in, complete lines/events out.

Chunks may split anywhere, including inside a UTF-8 character or between CR and LF;
decoding happens per complete line, so a split character is never mangled. A chunk
without a line break costs one append, so long lines arriving in many pieces stay linear.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# A line longer than this is dropped, not buffered: no usage event is that large, and a
# body without line breaks (a misrouted JSON body, a hostile upstream) must not grow
# the buffer without bound.
MAX_LINE = 16 * 1024 * 1024
# The data of one event (its ``data:`` lines up to the blank line) past this many
# characters is dropped, not buffered: a stream that never sends a blank line must not
# grow the event without bound either. No usage event comes near it.
MAX_EVENT = 4 * 1024 * 1024


class LineSplitter:
    """Bytes in, complete lines out (CR, LF and CRLF all end a line). Not thread-safe."""

    __slots__ = ("_parts", "_pending", "_pending_cr", "_skipping")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pending = 0
        # Inside an over-long line: discard bytes up to its end.
        self._skipping = False
        # The last chunk ended in CR: an LF opening the next chunk belongs to that CR.
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._pending_cr and chunk[0] == 0x0A:
            chunk = chunk[1:]
            if not chunk:
                self._pending_cr = False
                return []
        self._pending_cr = chunk[-1] == 0x0D
        if b"\n" not in chunk and b"\r" not in chunk:
            if not self._skipping:
                self._parts.append(chunk)
                self._pending += len(chunk)
                if self._pending > MAX_LINE:
                    self._parts, self._pending, self._skipping = [], 0, True
            return []
        self._parts.append(chunk)
        buf = b"".join(self._parts)
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        rest = lines.pop()
        if self._skipping:  # the first line is the tail of the over-long one
            lines.pop(0)
            self._skipping = False
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        return lines

    @property
    def buffered(self) -> int:
        """Bytes held for the incomplete last line (never more than `MAX_LINE`)."""
        return self._pending

    @property
    def idle(self) -> bool:
        """At the start of a line: the next byte fed is read as the first of a line."""
        return not self._parts and not self._pending_cr and not self._skipping

    def close(self) -> list[bytes]:
        """The last line when the body did not end with a line break."""
        rest = b"".join(self._parts)
        self._parts, self._pending = [], 0
        return [rest] if rest and not self._skipping else []


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    data: str


class SSEDecoder:
    """Feeds bytes, yields events. One per stream; not thread-safe."""

    __slots__ = ("_data", "_event", "_lines", "_size", "_skipping")

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # characters in _data
        # The event grew past MAX_EVENT: its data lines are ignored up to its end.
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes and characters held for incomplete lines and the incomplete event."""
        return self._lines.buffered + self._size

    @property
    def idle(self) -> bool:
        """Between two events: the next byte fed starts a new event, so bytes that hold
        only whole events can be left out without changing the events that follow."""
        return not self._data and not self._event and not self._skipping and self._lines.idle

    def feed(self, chunk: bytes) -> Iterator[Event]:
        for raw in self._lines.feed(chunk):
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                yield event

    def close(self) -> Iterator[Event]:
        """Flush a final event that was not followed by a blank line."""
        for raw in self._lines.close():
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                yield event
        if self._data:
            yield self._dispatch()

    def _line(self, line: str) -> Event | None:
        if not line:
            if self._skipping:
                self._skipping, self._event = False, ""
                return None
            return self._dispatch() if self._data or self._event else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            if self._skipping:
                return None
            self._size += len(value) + 1
            if self._size > MAX_EVENT:
                self._data, self._size, self._skipping = [], 0, True
                return None
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> Event:
        event = Event(self._event, "\n".join(self._data))
        self._event = ""
        self._data = []
        self._size = 0
        return event
