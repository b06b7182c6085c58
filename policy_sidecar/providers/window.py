"""Where a body known only by its head and tail can be cut so that parsers trust it.

Envoy's response capture (docs/envoy.md, "Usage capture") keeps the first and the last
few KB of a response. The head ends, and the tail starts, anywhere: inside an SSE event,
a line, a JSON member, a UTF-8 character. These functions find the last boundary in a
head and the first one in a tail, so a parser only ever sees whole events or lines.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MISSING",
    "after_first_event",
    "after_first_line",
    "last_event_end",
    "last_member_value",
    "member_value",
    "through_last_event",
    "through_last_line",
]

_DECODER = json.JSONDecoder()
#: What ``member_value`` returns when no whole JSON value follows.
MISSING: Any = object()
_SPACE = " \t\r\n"


def member_value(text: str, after: int) -> Any:
    """The JSON value of the member whose quoted name ends at ``after`` in ``text``
    (a body's tail, cut anywhere), or ``MISSING`` when what follows is no ``: value``
    (the quoted text was a string value, or the value is cut)."""
    start = after
    while start < len(text) and text[start] in _SPACE:
        start += 1
    if start >= len(text) or text[start] != ":":
        return MISSING
    start += 1
    while start < len(text) and text[start] in _SPACE:
        start += 1
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return MISSING
    return value


def last_member_value(text: str, key: str) -> Any:
    """The value of the last whole ``"key": value`` member in ``text``, or None."""
    needle = f'"{key}"'
    at = text.rfind(needle)
    while at >= 0:
        value = member_value(text, at + len(needle))
        if value is not MISSING:
            return value
        at = text.rfind(needle, 0, at)
    return None


# An SSE event ends with a blank line; lines end with LF, CRLF or CR.
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n", b"\r\r", b"\r\n\n", b"\n\r\n")


def last_event_end(data: bytes, before: int) -> int:
    """Where the last SSE event boundary (blank line) that ends at or before ``before``
    in ``data`` ends; 0 when none does. A boundary found inside a CRLF pair ("\\r\\r"
    then "\\n") leaves one blank line after it, which starts no event."""
    return max(
        (at + len(sep) if (at := data.rfind(sep, 0, before)) >= 0 else 0) for sep in _EVENT_ENDS
    )


def through_last_event(head: bytes) -> bytes:
    """``head`` up to the end of its last complete SSE event (empty if none ends)."""
    return head[: last_event_end(head, len(head))]


def after_first_event(tail: bytes) -> bytes:
    """``tail`` after the end of its first SSE event boundary: the events after it are
    whole. Empty when the tail holds no boundary (no event in it can be trusted)."""
    ends = [tail.find(sep) + len(sep) for sep in _EVENT_ENDS if sep in tail]
    return tail[min(ends) :] if ends else b""


def through_last_line(head: bytes) -> bytes:
    """``head`` up to its last line break."""
    end = max(head.rfind(b"\n"), head.rfind(b"\r"))
    return head[: end + 1]


def after_first_line(tail: bytes) -> bytes:
    """``tail`` after its first line break: the lines after it are whole."""
    ends = [i for i in (tail.find(b"\n"), tail.find(b"\r")) if i >= 0]
    return tail[min(ends) + 1 :] if ends else b""
