"""Shared helpers for sample bodies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_TEXT = "This is a sample reply from the fake provider."


@dataclass(frozen=True, slots=True)
class SampleResponse:
    """A response body a fake upstream can send.

    ``chunks`` are the pieces to write one by one (one per SSE event or stream line;
    a single piece for JSON bodies); ``body`` is their concatenation.
    """

    content_type: str
    chunks: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def pieces(text: str) -> list[str]:
    """The text cut at word boundaries the way models stream it (" word" tokens)."""
    found = re.findall(r"\s*\S+", text)
    return found or [text]


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def json_response(value: Any) -> SampleResponse:
    return SampleResponse("application/json", (dumps(value).encode(),))


def sse_response(chunks: list[bytes]) -> SampleResponse:
    return SampleResponse("text/event-stream", tuple(chunks))
