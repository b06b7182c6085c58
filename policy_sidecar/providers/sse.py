"""Incremental Server-Sent Events framing: bytes in, complete events out.

Chunks may split anywhere, including inside a UTF-8 character or between CR and LF;
decoding happens per complete line, so a split character is never mangled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    data: str


class SSEDecoder:
    """Feeds bytes, yields events. One per stream; not thread-safe."""

    __slots__ = ("_buf", "_data", "_event", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        # A chunk that ended in CR: if the next starts with LF, that LF belongs to it.
        self._pending_cr = False

    def feed(self, chunk: bytes) -> Iterator[Event]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        buf = self._buf + chunk
        lines = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buf = lines.pop()
        for raw in lines:
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                yield event

    def close(self) -> Iterator[Event]:
        """Flush a final event that was not followed by a blank line."""
        if self._buf:
            event = self._line(self._buf.decode("utf-8", "replace"))
            self._buf = b""
            if event is not None:
                yield event
        if self._data:
            yield self._dispatch()

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch() if self._data or self._event else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> Event:
        event = Event(self._event, "\n".join(self._data))
        self._event = ""
        self._data = []
        return event
