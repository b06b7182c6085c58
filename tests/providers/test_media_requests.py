"""OpenAI's image, audio and moderation requests parsed in full: every field of the
`ParsedRequest`, the exact error texts, and the audio estimate at its edges (found by
mutation testing, docs/testing.md)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from policy_sidecar.providers import ParsedRequest, RequestError, default_registry, load_request
from policy_sidecar.providers._multipart import UploadedFile
from policy_sidecar.providers._openai_media import (
    ASSUMED_BYTES_PER_SECOND,
    audio_seconds_estimate,
    image_price_key,
)

REGISTRY = default_registry()


def parse(path: str, body: dict[str, Any]) -> ParsedRequest:
    matched = REGISTRY.match("POST", path)
    assert matched is not None
    return matched[0].parse_request(matched[1], body)


def refused(path: str, body: dict[str, Any]) -> str:
    with pytest.raises(RequestError) as caught:
        parse(path, body)
    return str(caught.value)


def wav_head(byte_rate: int, *, magic: bytes = b"RIFF", form: bytes = b"WAVEfmt ") -> bytes:
    """A 44-byte WAV header with ``byte_rate`` at offset 28."""
    head = magic + struct.pack("<I", 36) + form
    head += struct.pack("<IHHIIHH", 16, 1, 1, 8000, byte_rate, 2, 16)
    head += b"data" + struct.pack("<I", 0)
    assert len(head) == 44
    return head


def upload(head: bytes, size: int) -> UploadedFile:
    return UploadedFile("a.wav", "audio/wav", size, head)


# -- images ---------------------------------------------------------------------------


def test_an_image_request_in_full() -> None:
    body = {"model": "gpt-image-1", "prompt": "x", "n": 3, "size": "1024x1536"}
    assert parse("/v1/images/generations", body) == ParsedRequest(
        model="gpt-image-1",
        stream=False,
        max_output_tokens=0,
        quantity=3.0,
        price_key="1024x1536/standard",
    )


@pytest.mark.parametrize(("stream", "expected"), [(True, True), ("true", True), (False, False)])
def test_an_image_stream_is_true_or_the_forms_text_true(stream: object, expected: bool) -> None:
    assert parse("/v1/images/generations", {"prompt": "x", "stream": stream}).stream is expected
    assert parse("/v1/images/generations", {"prompt": "x"}).stream is False


@pytest.mark.parametrize(("n", "count"), [(1, 1.0), (10, 10.0), ("3", 3.0), (" 7 ", 7.0)])
def test_the_image_count_bounds_and_a_forms_digits(n: object, count: float) -> None:
    assert parse("/v1/images/edits", {"prompt": "x", "n": n}).quantity == count


@pytest.mark.parametrize("n", ["0", "11", " ", "1.5"])
def test_a_forms_count_out_of_range_is_refused(n: str) -> None:
    assert refused("/v1/images/edits", {"prompt": "x", "n": n}) == (
        "'n' must be an integer from 1 to 10"
    )


@pytest.mark.parametrize("key", ["size", "quality"])
def test_a_non_string_size_or_quality_is_named(key: str) -> None:
    assert refused("/v1/images/generations", {"prompt": "x", key: 1024}) == (
        f"'{key}' must be a string, got integer"
    )
    assert parse("/v1/images/generations", {"prompt": "x", key: None}).price_key == (
        "1024x1024/standard"
    )


def test_the_price_key_defaults_each_half() -> None:
    assert image_price_key(None, "hd") == "1024x1024/hd"
    assert image_price_key("256x256", None) == "256x256/standard"
    assert image_price_key("", "") == "1024x1024/standard"


# -- speech ---------------------------------------------------------------------------


def test_a_speech_request_in_full() -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "hello", "stream_format": "sse"}
    assert parse("/v1/audio/speech", body) == ParsedRequest(
        model="tts-1", stream=True, max_output_tokens=0, quantity=5.0
    )
    plain = parse("/v1/audio/speech", {**body, "stream_format": "audio"})
    assert (plain.stream, plain.max_output_tokens) == (False, 0)


def test_a_speech_request_needs_a_model_and_a_voice() -> None:
    assert refused("/v1/audio/speech", {"voice": "alloy", "input": "x"}) == "'model' is required"
    assert refused("/v1/audio/speech", {"model": "tts-1", "input": "x"}) == "'voice' is required"


# -- transcriptions -------------------------------------------------------------------


def test_a_transcription_in_full() -> None:
    # 48,044 bytes at 32,000 bytes/s: 1.5 s exactly.
    file = upload(wav_head(32_000), 44 + 48_000)
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        assert parse(path, {"model": "whisper-1", "file": file, "stream": "true"}) == (
            ParsedRequest(
                model="whisper-1",
                stream=True,
                max_output_tokens=0,
                quantity=1.5,
                quantity_estimated=True,
            )
        )
        assert parse(path, {"model": "whisper-1", "file": file}).stream is False
        assert parse(path, {"model": "whisper-1", "file": file, "stream": True}).stream is True


def test_a_transcriptions_seconds_are_rounded_to_milliseconds() -> None:
    file = upload(wav_head(3), 44 + 1)  # 1/3 s
    assert parse("/v1/audio/transcriptions", {"model": "m", "file": file}).quantity == 0.333


def test_a_transcription_is_refused_with_exact_texts() -> None:
    file = upload(wav_head(32_000), 100)
    path = "/v1/audio/transcriptions"
    assert refused(path, {"file": file}) == "'model' is required"
    assert refused(path, {"model": "m"}) == "'file' is required (a multipart file part)"
    assert refused(path, {"model": "m", "file": "x"}) == (
        "'file' must be a file part (with a filename), not a text field"
    )


def test_a_transcription_form_through_load_request() -> None:
    content = wav_head(16_000) + bytes(16_000)
    data = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + content + b"\r\n--b--\r\n"
    )
    matched = REGISTRY.match("POST", "/v1/audio/transcriptions")
    assert matched is not None
    body = load_request(matched[1], data, "multipart/form-data; boundary=b")
    assert body["file"] == UploadedFile("a.wav", "audio/wav", len(content), content[:4096])
    assert matched[0].parse_request(matched[1], body).quantity == 1.0


# -- the audio estimate ---------------------------------------------------------------


def test_a_wav_header_gives_the_exact_seconds() -> None:
    assert audio_seconds_estimate(upload(wav_head(16_000), 44 + 16_000)) == 1.0
    # A header alone (exactly 44 bytes kept, nothing after it) is no audio at all.
    assert audio_seconds_estimate(upload(wav_head(16_000), 44)) == 0.0
    # One byte per second, and a byte rate past 2**31 (read unsigned).
    assert audio_seconds_estimate(upload(wav_head(1), 44 + 5)) == 5.0
    assert audio_seconds_estimate(upload(wav_head(2**31), 44 + 2**31)) == 1.0


@pytest.mark.parametrize(
    "head",
    [
        wav_head(0),  # no byte rate: the size decides
        wav_head(32_000, magic=b"RIFX"),  # not RIFF
        wav_head(32_000, form=b"AVI LIST"),  # RIFF, but not a WAVE
        wav_head(32_000)[:43],  # a header cut short
        b"\xff\xfb\x90\x00" + bytes(200),  # an MP3 frame
    ],
)
def test_anything_but_a_wav_header_is_estimated_at_the_assumed_rate(head: bytes) -> None:
    size = 3 * ASSUMED_BYTES_PER_SECOND
    assert audio_seconds_estimate(upload(head, size)) == 3.0


# -- moderation -----------------------------------------------------------------------


def test_a_moderation_request_in_full() -> None:
    body = {"model": "text-moderation-latest", "input": "x", "stream": True}
    assert parse("/v1/moderations", body) == ParsedRequest(
        model="text-moderation-latest", stream=True, max_output_tokens=0, quantity=1.0
    )
    assert parse("/v1/moderations", {"input": "x"}).stream is False


def test_a_moderation_request_is_refused_with_exact_texts() -> None:
    assert refused("/v1/moderations", {"model": "m"}) == "'input' is required"
    assert refused("/v1/moderations", {"input": {"a": 1}}) == (
        "'input' must be a string or an array, got object"
    )
    assert refused("/v1/moderations", {"input": "x", "stream": "yes"}) == (
        "'stream' must be a boolean, got string"
    )
