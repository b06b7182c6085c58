"""OpenAI's non-token routes: images, audio and moderation. Pure functions; no I/O.

Wire formats transcribed from OpenAI's public API reference (``/v1/images/generations``,
``/v1/images/edits``, ``/v1/audio/speech``, ``/v1/audio/transcriptions``,
``/v1/audio/translations``, ``/v1/moderations``). Each route bills one unit
(``providers.units``): images per image (priced by size and quality), speech per
character of input, transcription per second of audio, moderation per request (free).

Requests give what they fix (images asked for, characters, an estimate of the audio's
seconds from the upload); responses give what was billed where they say it (images
returned, ``duration`` / ``usage.seconds`` of a transcription). Response parsers take
the body whole or in chunks and never raise.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from policy_sidecar.providers._fields import is_int, opt_bool, opt_model, req_str, wrong
from policy_sidecar.providers._multipart import UploadedFile
from policy_sidecar.providers._usage import FULL_PARSE_LIMIT, TAIL_BYTES
from policy_sidecar.providers.base import ParsedRequest, RequestError, Usage, UsageParser
from policy_sidecar.providers.sse import SSEDecoder
from policy_sidecar.providers.window import (
    after_first_event,
    last_member_value,
    through_last_event,
)

__all__ = [
    "FORM_OPERATIONS",
    "MEDIA_PARSERS",
    "audio_seconds_estimate",
    "media_usage_parser",
]

#: Operations whose requests are ``multipart/form-data`` uploads.
FORM_OPERATIONS = frozenset({"image_edits", "transcriptions", "translations"})
#: At most this many images per request (the API's own bound for ``n``).
MAX_IMAGES = 10
#: Bytes per second assumed for a compressed upload whose duration is not in its
#: header (128 kbit/s, a common MP3/M4A rate): the estimate is flagged.
ASSUMED_BYTES_PER_SECOND = 16_000

_IMAGE_DEFAULT_MODEL = "dall-e-2"
_MODERATION_DEFAULT_MODEL = "omni-moderation-latest"


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise wrong(key, "a string", value)


def _count(body: Mapping[str, Any]) -> int:
    """``n``: JSON gives an integer, a form gives its digits."""
    value = body.get("n")
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not is_int(value) or not 1 <= value <= MAX_IMAGES:
        raise RequestError(f"'n' must be an integer from 1 to {MAX_IMAGES}")
    count: int = value
    return count


def image_price_key(size: str | None, quality: str | None) -> str:
    """The key of an image price: ``"1024x1024/hd"``; the API's defaults fill gaps."""
    return f"{size or '1024x1024'}/{quality or 'standard'}"


def parse_images(body: Mapping[str, Any]) -> ParsedRequest:
    """Generations (JSON) and edits (a form: ``image`` files, ``prompt``, ``n``…)."""
    req_str(body, "prompt")
    model = opt_model(body) or _IMAGE_DEFAULT_MODEL
    stream = body.get("stream") in (True, "true")
    return ParsedRequest(
        model=model,
        stream=stream,
        max_output_tokens=0,
        quantity=float(_count(body)),
        price_key=image_price_key(_text(body, "size"), _text(body, "quality")),
    )


def parse_speech(body: Mapping[str, Any]) -> ParsedRequest:
    model = opt_model(body)
    if model is None:
        raise RequestError("'model' is required")
    text = req_str(body, "input")
    req_str(body, "voice")
    return ParsedRequest(
        model=model,
        stream=body.get("stream_format") == "sse",
        max_output_tokens=0,
        quantity=float(len(text)),
    )


def audio_seconds_estimate(upload: UploadedFile) -> float:
    """Seconds of audio in an upload: exact for PCM WAV (its header's byte rate),
    else the size at `ASSUMED_BYTES_PER_SECOND`. Either way an estimate: the
    provider's own figure, when the response has one, replaces it."""
    head = upload.head
    if len(head) >= 44 and head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt ":
        byte_rate: int = struct.unpack_from("<I", head, 28)[0]
        if byte_rate > 0:
            return max(upload.size - 44, 0) / byte_rate
    return upload.size / ASSUMED_BYTES_PER_SECOND


def parse_transcription(body: Mapping[str, Any]) -> ParsedRequest:
    """Transcriptions and translations: a form with ``file`` and ``model``."""
    upload = body.get("file")
    if not isinstance(upload, UploadedFile):
        if "file" not in body:
            raise RequestError("'file' is required (a multipart file part)")
        raise RequestError("'file' must be a file part (with a filename), not a text field")
    model = opt_model(body)
    if model is None:
        raise RequestError("'model' is required")
    return ParsedRequest(
        model=model,
        stream=body.get("stream") in (True, "true"),
        max_output_tokens=0,
        quantity=round(audio_seconds_estimate(upload), 3),
        quantity_estimated=True,
    )


def parse_moderation(body: Mapping[str, Any]) -> ParsedRequest:
    if "input" not in body:
        raise RequestError("'input' is required")
    value = body["input"]
    if not isinstance(value, str | list):
        raise wrong("input", "a string or an array", value)
    return ParsedRequest(
        model=opt_model(body) or _MODERATION_DEFAULT_MODEL,
        stream=opt_bool(body, "stream"),
        max_output_tokens=0,
        quantity=1.0,
    )


MEDIA_PARSERS = {
    "images": parse_images,
    "image_edits": parse_images,
    "speech": parse_speech,
    "transcriptions": parse_transcription,
    "translations": parse_transcription,
    "moderations": parse_moderation,
}


# -- responses ------------------------------------------------------------------------

_UNITS = {
    "images": "images",
    "image_edits": "images",
    "speech": "characters",
    "transcriptions": "seconds",
    "translations": "seconds",
    "moderations": "requests",
}


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _token_usage(usage: Any) -> tuple[int, int, int]:
    """(input, output, total) tokens a gpt-image / gpt-4o-transcribe response reports
    beside its unit; zeros when it reports none."""
    if not isinstance(usage, dict):
        return 0, 0, 0
    prompt, completion, total = (
        _count_of(usage.get(k)) for k in ("input_tokens", "output_tokens", "total_tokens")
    )
    return prompt, completion, total or prompt + completion


def _count_of(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _with_tokens(usage: Usage, tokens: tuple[int, int, int]) -> Usage:
    prompt, completion, total = tokens
    return replace(usage, prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def media_usage(operation: str, obj: Any) -> Usage | None:
    """The billed usage in a decoded response body; None for an error or no body."""
    unit = _UNITS[operation]
    if not isinstance(obj, dict) or "error" in obj:
        return None
    tokens = _token_usage(obj.get("usage"))
    quantity: float | None = None
    price_key: str | None = None
    if unit == "images":
        data = obj.get("data")
        if not isinstance(data, list):
            return None
        quantity = float(len(data))
        size, quality = obj.get("size"), obj.get("quality")
        if isinstance(size, str) and isinstance(quality, str):
            price_key = image_price_key(size, quality)
    elif unit == "seconds":
        usage = obj.get("usage")
        if isinstance(usage, dict) and usage.get("type") == "duration":
            quantity = _number(usage.get("seconds"))
        if quantity is None:
            quantity = _number(obj.get("duration"))
    elif unit == "requests":
        if not isinstance(obj.get("results"), list):
            return None
        quantity = 1.0
    return _with_tokens(Usage(unit=unit, quantity=quantity, price_key=price_key), tokens)


class MediaBodyParser:
    """A JSON answer up to 1 MiB, parsed whole; beyond, what it says is read without
    holding it: images counted by their keys as the bytes pass (a base64 image answer
    can be tens of MB), the other fields found by key in the kept tail. Audio bytes
    and plain-text transcripts report nothing (the request's quantity applies). Never
    raises."""

    __slots__ = (
        "_carry",
        "_chunks",
        "_head",
        "_images",
        "_operation",
        "_size",
        "_truncated",
        "_windowed",
    )

    def __init__(self, operation: str) -> None:
        self._operation = operation
        self._chunks: list[bytes] = []
        self._size = 0
        self._head = b""
        self._truncated = False
        # Images seen so far (a "b64_json" or "url" key: inside a JSON string a quote
        # is escaped, so these bytes are only ever keys), and the bytes that may hold
        # the start of a key cut by a chunk boundary.
        self._images = 0
        self._carry: tuple[bytes, ...] = (b"",) * len(_IMAGE_KEYS)
        # Only the first and last bytes were seen (the access log's capture).
        self._windowed = False

    def feed(self, chunk: bytes) -> None:
        if not self._head:
            # The first byte that is not whitespace: "{" for a JSON answer.
            self._head = chunk.lstrip()[:1]
        # Each key is counted in its own window: the bytes before the chunk that could
        # start it (one fewer than the key, so no whole key is ever counted twice).
        carries = []
        for key, carry in zip(_IMAGE_KEYS, self._carry, strict=True):
            window = carry + chunk
            self._images += window.count(key)
            carries.append(window[-(len(key) - 1) :])
        self._carry = tuple(carries)
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > FULL_PARSE_LIMIT + TAIL_BYTES:
            tail = b"".join(self._chunks)[-TAIL_BYTES:]
            self._chunks, self._size, self._truncated = [tail], len(tail), True

    def finish(self) -> Usage | None:
        body = b"".join(self._chunks)
        self._chunks = []
        if self._head != b"{":
            # Audio bytes (speech) or plain text (a transcription as text/srt/vtt):
            # nothing to read; the request's quantity stands.
            return None
        if not self._truncated:
            return media_usage(self._operation, _loads(body))
        return self._from_tail(body.decode("utf-8", "replace"))

    def feed_window(self, head: bytes, tail: bytes) -> None:
        """Only the first and last bytes of a large answer: what its end says. How many
        images it held is not knowable from them, so the request's ``n`` stands."""
        self._head = head.lstrip()[:1]
        self._chunks, self._size, self._truncated = [tail], len(tail), True
        self._windowed = True

    def _from_tail(self, text: str) -> Usage | None:
        """A large answer: the fields near its end, and the images counted."""
        found = {
            key: last_member_value(text, key) for key in ("usage", "size", "quality", "duration")
        }
        obj: dict[str, Any] = {k: v for k, v in found.items() if v is not None}
        if self._operation in ("images", "image_edits"):
            obj["data"] = [None] * self._images
            usage = media_usage(self._operation, obj)
            return replace(usage, quantity=None) if usage and self._windowed else usage
        # A moderation answer is never this large: with no "results" found, it reports none.
        return media_usage(self._operation, obj)


_IMAGE_KEYS = (b'"url"', b'"b64_json"')


class ImageStreamParser:
    """``stream: true`` image generation: SSE events; each ``*.completed`` event is
    one final image (partial images are not billed as images)."""

    __slots__ = ("_decoder", "_images", "_tokens", "_windowed")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._images = 0
        self._tokens = (0, 0, 0)
        self._windowed = False

    def feed(self, chunk: bytes) -> None:
        for event in self._decoder.feed(chunk):
            self._event(event.data)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        """Only the whole events at both ends of a long stream: a completed image event
        (a base64 image) rarely fits, so the request's ``n`` is the count."""
        self._windowed = True
        self.feed(through_last_event(head))
        self._decoder = SSEDecoder()
        self.feed(after_first_event(tail))

    def finish(self) -> Usage | None:
        for event in self._decoder.close():
            self._event(event.data)
        if self._windowed:
            return _with_tokens(Usage(unit="images", quantity=None), self._tokens)
        if not self._images:
            return None
        return _with_tokens(Usage(unit="images", quantity=float(self._images)), self._tokens)

    def _event(self, data: str) -> None:
        if ".completed" not in data:
            return
        obj = _loads(data.encode())
        if isinstance(obj, dict) and str(obj.get("type", "")).endswith(".completed"):
            self._images += 1
            more = _token_usage(obj.get("usage"))
            self._tokens = tuple(a + b for a, b in zip(self._tokens, more, strict=True))  # type: ignore[assignment]


def media_usage_parser(operation: str, *, streaming: bool) -> UsageParser:
    if streaming and operation in ("images", "image_edits"):
        return ImageStreamParser()
    return MediaBodyParser(operation)
