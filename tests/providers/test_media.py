"""The non-token routes as pure functions: request bodies (JSON and multipart) to the
quantity they fix, response bodies (fixtures transcribed from the providers' API
references, tests/fixtures/SOURCES.md) to the quantity billed."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_sidecar.providers import (
    RequestError,
    Usage,
    default_registry,
    load_request,
    patched_body,
)
from policy_sidecar.providers._multipart import MAX_PARTS, UploadedFile, parse_form
from policy_sidecar.providers._openai_media import audio_seconds_estimate
from policy_sidecar.providers.units import request_quantity

FIXTURES = Path(__file__).parents[1] / "fixtures"
REGISTRY = default_registry()


def usage_of(path: str, fixture: str, *, streaming: bool = False, byte_by_byte: bool = False):  # type: ignore[no-untyped-def]
    matched = REGISTRY.match("POST", path)
    assert matched is not None
    provider, route = matched
    parser = provider.usage_parser(route, streaming=streaming)
    data = (FIXTURES / fixture).read_bytes()
    for piece in (data[i : i + 1] for i in range(len(data))) if byte_by_byte else (data,):
        parser.feed(piece)
    return parser.finish()


@pytest.mark.parametrize("byte_by_byte", [False, True])
@pytest.mark.parametrize(
    ("path", "fixture", "streaming", "expected"),
    [
        (
            "/v1/images/generations",
            "openai/images_response.json",
            False,
            Usage(unit="images", quantity=2.0),
        ),
        (
            "/v1/images/edits",
            "openai/images_gpt_image_response.json",
            False,
            Usage(50, 50, 100, unit="images", quantity=1.0, price_key="1024x1536/high"),
        ),
        # One completed image; the partial image is not billed as one.
        (
            "/v1/images/generations",
            "openai/images_stream.txt",
            True,
            Usage(50, 50, 100, unit="images", quantity=1.0),
        ),
        # usage.seconds (what is billed, whole seconds) wins over duration (8.47).
        (
            "/v1/audio/transcriptions",
            "openai/transcription_verbose_response.json",
            False,
            Usage(unit="seconds", quantity=9.0),
        ),
        # Token-billed transcription: no seconds, so the request's estimate will apply.
        (
            "/v1/audio/transcriptions",
            "openai/transcription_response.json",
            False,
            Usage(14, 45, 59, unit="seconds", quantity=None),
        ),
        (
            "/v1/moderations",
            "openai/moderations_response.json",
            False,
            Usage(unit="requests", quantity=1.0),
        ),
        (
            "/v2/rerank",
            "cohere/v2_rerank_response.json",
            False,
            Usage(unit="search_units", quantity=1.0),
        ),
        (
            "/v1/messages/count_tokens",
            "anthropic/count_tokens_response.json",
            False,
            Usage(unit="requests", quantity=1.0),
        ),
        (
            "/v1beta/models/gemini-2.5-pro:countTokens",
            "gemini/count_tokens_response.json",
            False,
            Usage(unit="requests", quantity=1.0),
        ),
        # 3000 cache writes: 2000 for 5 minutes, 1000 for an hour; prompt = 50 + 1000 + 3000.
        (
            "/v1/messages",
            "anthropic/messages_cache_write_response.json",
            False,
            Usage(4050, 400, 4450, 1000, cache_write_5m_tokens=2000, cache_write_1h_tokens=1000),
        ),
    ],
)
def test_usage_from_fixture(
    path: str, fixture: str, streaming: bool, expected: Usage, byte_by_byte: bool
) -> None:
    assert usage_of(path, fixture, streaming=streaming, byte_by_byte=byte_by_byte) == expected


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/images/generations", b'{"error": {"message": "bad", "type": "invalid_request"}}'),
        ("/v1/audio/speech", b"\xff\xfb\x90\x64" + bytes(100)),
        ("/v1/audio/transcriptions", b"plain text transcript"),
        ("/v1/moderations", b"{not json"),
        ("/v2/rerank", b'{"message": "invalid request"}'),
        ("/v1/messages/count_tokens", b'{"type":"error","error":{"type":"x","message":"y"}}'),
        ("/v1beta/models/g:countTokens", b'{"error": {"code": 400}}'),
    ],
)
def test_errors_and_opaque_bodies_report_nothing(path: str, body: bytes) -> None:
    matched = REGISTRY.match("POST", path)
    assert matched is not None
    parser = matched[0].usage_parser(matched[1], streaming=False)
    parser.feed(body)
    assert parser.finish() is None


def test_anthropic_cache_writes_without_the_split_are_five_minute_ones() -> None:
    from policy_sidecar.providers.anthropic import extract, to_usage

    raw = extract({"usage": {"input_tokens": 10, "cache_creation_input_tokens": 300}})
    assert raw is not None
    usage = to_usage(raw)
    assert usage is not None
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (300, 0)


# -- requests ------------------------------------------------------------------------


def parse(path: str, body: dict[str, object]):  # type: ignore[no-untyped-def]
    matched = REGISTRY.match("POST", path)
    assert matched is not None
    return matched[0].parse_request(matched[1], body)


def test_image_requests_fix_the_count_and_the_price_key() -> None:
    parsed = parse(
        "/v1/images/generations",
        {"model": "dall-e-3", "prompt": "x", "n": 2, "size": "1792x1024", "quality": "hd"},
    )
    assert (parsed.model, parsed.quantity, parsed.price_key) == ("dall-e-3", 2.0, "1792x1024/hd")
    assert parsed.max_output_tokens == 0  # nothing reserved against token limits
    defaults = parse("/v1/images/generations", {"prompt": "x"})
    assert (defaults.model, defaults.quantity, defaults.price_key) == (
        "dall-e-2",
        1.0,
        "1024x1024/standard",
    )


@pytest.mark.parametrize("n", [0, 11, -1, 2.5, True, "many"])
def test_image_counts_out_of_range_are_refused(n: object) -> None:
    with pytest.raises(RequestError, match="'n' must be an integer from 1 to 10"):
        parse("/v1/images/generations", {"prompt": "x", "n": n})


def test_speech_is_counted_in_characters() -> None:
    parsed = parse("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "héllo"})
    assert parsed.quantity == 5.0
    with pytest.raises(RequestError, match="'input' is required"):
        parse("/v1/audio/speech", {"model": "tts-1", "voice": "alloy"})


def test_moderation_defaults_its_model_and_is_one_request() -> None:
    parsed = parse("/v1/moderations", {"input": ["a", "b"]})
    assert (parsed.model, parsed.quantity) == ("omni-moderation-latest", 1.0)
    with pytest.raises(RequestError, match="'input' must be a string or an array"):
        parse("/v1/moderations", {"input": 3})


def test_rerank_estimates_a_search_unit_per_hundred_documents() -> None:
    parsed = parse("/v2/rerank", {"model": "rerank-v3.5", "query": "q", "documents": ["d"] * 250})
    assert (parsed.quantity, parsed.quantity_estimated) == (3.0, True)


def wav(seconds: float, byte_rate: int = 32_000) -> bytes:
    data = int(seconds * byte_rate)
    header = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, byte_rate // 2, byte_rate, 2, 16)
    return header + b"data" + struct.pack("<I", data) + bytes(data)


def form(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ") -> tuple[bytes, str]:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_transcription_form_is_estimated_from_its_wav_header() -> None:
    body, content_type = form(
        ("model", None, b"whisper-1"), ("file", "a.wav", wav(2.5)), ("language", None, b"en")
    )
    matched = REGISTRY.match("POST", "/v1/audio/transcriptions")
    assert matched is not None
    loaded = load_request(matched[1], body, content_type)
    assert isinstance(loaded["file"], UploadedFile)
    assert loaded["file"].size == len(wav(2.5))
    parsed = matched[0].parse_request(matched[1], loaded)
    assert (parsed.model, parsed.quantity, parsed.quantity_estimated) == ("whisper-1", 2.5, True)


def test_compressed_audio_is_estimated_at_the_assumed_rate() -> None:
    upload = UploadedFile("a.mp3", "audio/mpeg", 160_000, b"ID3")
    assert audio_seconds_estimate(upload) == 10.0


def test_a_repeated_field_becomes_a_list() -> None:
    body, content_type = form(("image[]", "a.png", b"1"), ("image[]", "b.png", b"2"))
    images = parse_form(body, content_type)["image[]"]
    assert [i.filename for i in images] == ["a.png", "b.png"]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"--XyZ--\r\n", "multipart/form-data", "boundary of 1 to 70"),
        (b"nothing here", "multipart/form-data; boundary=XyZ", "boundary not found"),
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',
            "multipart/form-data; boundary=XyZ",
            "cut short",
        ),
        (
            b"--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--",
            "multipart/form-data; boundary=XyZ",
            "Content-Disposition: form-data",
        ),
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe\r\n--XyZ--',
            "multipart/form-data; boundary=XyZ",
            "not valid UTF-8",
        ),
    ],
)
def test_malformed_forms_are_precise_request_errors(
    body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(RequestError, match=message):
        parse_form(body, content_type)


def test_too_many_parts_are_refused() -> None:
    body, content_type = form(*((f"f{i}", None, b"v") for i in range(MAX_PARTS + 1)))
    with pytest.raises(RequestError, match="more than 256 parts"):
        parse_form(body, content_type)


def test_upload_routes_take_forms_only_and_other_routes_json_only() -> None:
    matched = REGISTRY.match("POST", "/v1/images/edits")
    assert matched is not None
    with pytest.raises(RequestError, match="multipart/form-data"):
        load_request(matched[1], b'{"prompt": "x"}', "application/json")
    chat = REGISTRY.match("POST", "/v1/chat/completions")
    assert chat is not None
    body, content_type = form(("model", None, b"gpt-4o"))
    with pytest.raises(ValueError, match="Expecting value"):  # a form is never read as JSON
        load_request(chat[1], body, content_type)


def test_a_transcription_without_a_file_part_is_refused() -> None:
    with pytest.raises(RequestError, match="'file' must be a file part"):
        parse("/v1/audio/transcriptions", {"model": "whisper-1", "file": "text"})
    with pytest.raises(RequestError, match="'file' is required"):
        parse("/v1/audio/transcriptions", {"model": "whisper-1"})


# -- the request's quantity when the response gives none ------------------------------


def test_the_request_quantity_fills_what_the_response_left_out() -> None:
    filled = request_quantity(
        Usage(14, 45, 59, unit="seconds"),
        unit="seconds",
        quantity=2.5,
        estimated=True,
        price_key=None,
        ok=True,
    )
    assert filled == Usage(14, 45, 59, unit="seconds", quantity=2.5, quantity_estimated=True)


def test_an_unreadable_success_is_billed_the_request_quantity_an_error_nothing() -> None:
    args = {"unit": "characters", "quantity": 44.0, "estimated": False, "price_key": None}
    assert request_quantity(None, ok=True, **args) == Usage(unit="characters", quantity=44.0)  # type: ignore[arg-type]
    assert request_quantity(None, ok=False, **args) is None  # type: ignore[arg-type]


def test_token_routes_pass_through() -> None:
    usage = Usage(1, 2, 3)
    assert (
        request_quantity(
            usage, unit="tokens", quantity=9.0, estimated=True, price_key=None, ok=True
        )
        is usage
    )


def test_a_patched_form_keeps_every_byte_but_the_field() -> None:
    upload = wav(0.5)
    body, content_type = form(("model", None, b"transcriber"), ("file", "a.wav", upload))
    patched = patched_body(body, content_type, {}, {"model": "whisper-1"})
    assert patched == body.replace(b"transcriber", b"whisper-1")
    form_after = parse_form(patched, content_type)
    assert form_after["model"] == "whisper-1" and form_after["file"].size == len(upload)
    assert patched_body(body, content_type, {}, {}) is None
    assert patched_body(b"{}", "application/json", {"a": 1}, {"b": 2}) == b'{"a": 1, "b": 2}'


@pytest.mark.parametrize("chunk", [7, 9, 65536])
def test_a_large_image_answer_is_counted_without_being_held(chunk: int) -> None:
    """Ten 300 KB base64 images (3 MB, past the 1 MiB parsed whole): counted by their
    keys as the bytes pass, size and quality found in the tail."""
    image = {"b64_json": "A" * 300_000, "revised_prompt": 'a "url" and "b64_json" inside'}
    body = json.dumps(
        {"created": 1, "data": [image] * 10, "quality": "high", "size": "1024x1536"}
    ).encode()
    matched = REGISTRY.match("POST", "/v1/images/generations")
    assert matched is not None
    parser = matched[0].usage_parser(matched[1], streaming=False)
    for i in range(0, len(body), chunk):
        parser.feed(body[i : i + chunk])
    assert parser.finish() == Usage(unit="images", quantity=10.0, price_key="1024x1536/high")


MEDIA_PATHS = (
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/moderations",
    "/v2/rerank",
    "/v1/messages/count_tokens",
    "/v1beta/models/g:countTokens",
    "/v1beta/models/g:batchEmbedContents",
)


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(MEDIA_PATHS),
    streaming=st.booleans(),
    chunks=st.lists(st.binary(max_size=64), max_size=8),
)
def test_no_parser_raises_on_any_bytes(path: str, streaming: bool, chunks: list[bytes]) -> None:
    matched = REGISTRY.match("POST", path)
    assert matched is not None
    parser = matched[0].usage_parser(matched[1], streaming=streaming)
    for chunk in chunks:
        parser.feed(chunk)
    parser.finish()


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=256)
    | st.builds(
        lambda parts: b"".join(parts),
        st.lists(
            st.sampled_from(
                [b"--XyZ", b"\r\n", b"\r\n\r\n", b"--", b'Content-Disposition: form-data; name="a"',
                 b'; filename="f"', b"value", b"\xff"]
            ),
            max_size=24,
        ),
    )
)  # fmt: skip
def test_the_form_parser_raises_only_request_errors(body: bytes) -> None:
    with contextlib.suppress(RequestError):  # anything else fails the test
        parse_form(body, "multipart/form-data; boundary=XyZ")
