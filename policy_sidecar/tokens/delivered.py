"""What a response delivered before it ended, to charge responses that report no usage.

A stream the client closes early (or one that never asks for its usage chunk) carries
no usage report, yet the provider bills every token it sent. `DeliveredText` watches
the response bytes and collects the generated text so that the completion tokens can
be estimated with the tokenizer (`estimate_completion`).

Recognised text: the JSON string values of the keys every provider's stream (and JSON
body) uses for generated content — ``content``, ``text``, ``delta``, ``thinking``,
``partial_json``, ``arguments``, ``refusal`` — found line by line with one regular
expression, without decoding the JSON. Lines of events that repeat text already sent
(the Responses API's ``*.done`` and final events, Cohere v1's ``stream-end``) are
skipped. A response in which nothing is
recognised (an unknown format, a body cut inside its first string) falls back to the
delivered byte count at `BYTES_PER_TOKEN`.
"""

from __future__ import annotations

import json
import math
import re

import tiktoken

from policy_sidecar.providers.base import Usage
from policy_sidecar.providers.sse import LineSplitter
from policy_sidecar.providers.window import after_first_line, through_last_line
from policy_sidecar.tokens import count_text

__all__ = ["BYTES_PER_TOKEN", "MAX_TEXT_CHARS", "DeliveredText", "estimate_completion"]

# The fallback ratio: about 4 bytes of English text per token for the GPT tokenizers.
# Applied to raw response bytes it over-counts (JSON and SSE framing are bytes too),
# which errs towards charging what was delivered rather than less.
BYTES_PER_TOKEN = 4
# Text kept for tokenizing; beyond it the count is extrapolated by length, so the cost
# of an estimate is bounded however long the response ran.
MAX_TEXT_CHARS = 256 * 1024

_CONTENT = re.compile(
    rb'"(?:content|text|delta|thinking|partial_json|arguments|refusal)"\s*:\s*'
    rb'"((?:[^"\\]|\\.)*)"'
)
# Events that repeat text already streamed: the Responses API's ``*.done`` and final
# ``response.*`` events, Cohere v1's ``stream-end``.
_RESPONSE_END = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


class DeliveredText:
    """Feeds response bytes (decoded), collects generated text. One per response; not
    thread-safe. ``feed`` and ``finish`` make it a `UsageParser` (it reports no usage),
    so `with_encoding` can inflate a compressed body in front of it."""

    __slots__ = ("_chars", "_covered", "_kept", "_lines", "_matched", "_parts")

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._parts: list[str] = []
        self._chars = 0  # all recognised text, kept or not
        self._kept = 0
        self._matched = False
        self._covered: int | None = None

    @property
    def recognised(self) -> bool:
        """Whether any content field was seen (even an empty one)."""
        return self._matched

    @property
    def chars(self) -> int:
        return self._chars

    def text(self) -> str:
        """The first `MAX_TEXT_CHARS` characters of the recognised text."""
        return "".join(self._parts)

    def feed(self, chunk: bytes) -> None:
        for line in self._lines.feed(chunk):
            self._line(line)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        """Only whole lines of the head and the tail: `covered` says how many bytes."""
        first, last = through_last_line(head), after_first_line(tail)
        self._covered = len(first) + len(last)
        self.feed(first)
        self.feed(last)

    def behind(self, covered: int) -> None:
        """What was fed came from the first ``covered`` bytes of a longer body: the
        capture's last save of a stream the client cut was behind what Envoy sent (it
        is saved every 16 chunks). The caller extrapolates, as for a window."""
        if self._covered is None:
            self._covered = covered

    @property
    def covered(self) -> int | None:
        """Bytes of the body the text was read from when only a window was fed (the
        caller extrapolates to the whole body); None when the whole body was fed."""
        return self._covered

    def finish(self) -> Usage | None:
        for line in self._lines.close():
            self._line(line)
        return None

    def _line(self, line: bytes) -> None:
        if b'.done"' in line or b'"stream-end"' in line:
            return
        if b'"response.' in line and any(end in line for end in _RESPONSE_END):
            return
        for match in _CONTENT.finditer(line):
            self._matched = True
            raw = match.group(1)
            if not raw:
                continue
            text = _unescape(raw)
            self._chars += len(text)
            room = MAX_TEXT_CHARS - self._kept
            if room > 0:
                kept = text[:room]
                self._parts.append(kept)
                self._kept += len(kept)


def _unescape(raw: bytes) -> str:
    if b"\\" not in raw:
        return raw.decode("utf-8", "replace")
    try:
        decoded = json.loads(b'"' + raw + b'"')
    except ValueError:
        return raw.decode("utf-8", "replace")
    return decoded if isinstance(decoded, str) else ""


def estimate_completion(
    delivered: DeliveredText,
    *,
    response_bytes: int,
    encoding: tiktoken.Encoding,
    max_tokens: int | None,
) -> int:
    """Completion tokens the response delivered, estimated.

    From the recognised text with the tokenizer (extrapolated by length past
    `MAX_TEXT_CHARS`), else from ``response_bytes`` at `BYTES_PER_TOKEN`. Never more
    than ``max_tokens`` when the request set it: the provider cannot have generated more.
    """
    if delivered.recognised:
        text = delivered.text()
        tokens = count_text(encoding, text) if text else 0
        if text and delivered.chars > len(text):
            tokens = math.ceil(tokens * delivered.chars / len(text))
        covered = delivered.covered
        if covered is not None and 0 < covered < response_bytes:
            # Only a head and a tail were read: the gap is assumed to be alike.
            tokens = math.ceil(tokens * response_bytes / covered)
    else:
        tokens = math.ceil(max(response_bytes, 0) / BYTES_PER_TOKEN)
    if max_tokens is not None and max_tokens >= 0:
        tokens = min(tokens, max_tokens)
    return tokens
