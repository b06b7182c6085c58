"""OpenAI's image, audio and moderation answers at their edges: a streamed image count
and its tokens (whole and windowed), zero and fractional seconds, leading whitespace
before a JSON answer (found by mutation testing, docs/testing.md)."""

from __future__ import annotations

import json
from typing import Any

from policy_sidecar.providers import Usage
from policy_sidecar.providers._openai_media import (
    ImageStreamParser,
    MediaBodyParser,
    media_usage,
    media_usage_parser,
)


def event(data: dict[str, Any] | list[Any]) -> bytes:
    return b"event: x\ndata: " + json.dumps(data).encode() + b"\n\n"


def completed(tokens: int) -> dict[str, Any]:
    return {
        "type": "image_generation.completed",
        "b64_json": "AAAA",
        "usage": {
            "input_tokens": tokens,
            "output_tokens": 10 * tokens,
            "total_tokens": 11 * tokens,
        },
    }


PARTIAL = {"type": "image_generation.partial_image", "b64_json": "AA", "note": "x.completed"}


def test_every_completed_image_in_a_stream_is_counted_with_its_tokens() -> None:
    parser = media_usage_parser("images", streaming=True)
    assert isinstance(parser, ImageStreamParser)
    for data in (PARTIAL, completed(1), [".completed"], PARTIAL, completed(2)):
        parser.feed(event(data))
    assert parser.finish() == Usage(3, 30, 33, unit="images", quantity=2.0)


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    parser = ImageStreamParser()
    parser.feed(event(completed(1)) + event(completed(1))[:-2])
    assert parser.finish() == Usage(2, 20, 22, unit="images", quantity=2.0)


def test_a_stream_with_no_completed_image_reports_none() -> None:
    parser = ImageStreamParser()
    parser.feed(event(PARTIAL) + event({"no": "type", "x": ".completed"}))
    assert parser.finish() is None


def test_a_windowed_image_stream_reports_the_tokens_of_both_ends_and_no_count() -> None:
    parser = ImageStreamParser()
    head = event(completed(1)) + b"data: {cut"
    tail = b'64_json": "AAAA"}\n\n' + event(completed(2))
    parser.feed_window(head, tail)
    assert parser.finish() == Usage(3, 30, 33, unit="images", quantity=None)


def test_an_edit_stream_is_an_image_stream_other_routes_are_bodies() -> None:
    assert isinstance(media_usage_parser("image_edits", streaming=True), ImageStreamParser)
    assert isinstance(media_usage_parser("images", streaming=False), MediaBodyParser)
    assert isinstance(media_usage_parser("speech", streaming=True), MediaBodyParser)


def test_leading_whitespace_before_a_json_answer_is_skipped() -> None:
    answer = b'{"text": "hi", "duration": 2.5}'
    parser = MediaBodyParser("transcriptions")
    parser.feed(b" \r\n" * 10)  # 30 bytes of whitespace, in a chunk of its own
    parser.feed(answer)
    assert parser.finish() == Usage(unit="seconds", quantity=2.5)
    windowed = MediaBodyParser("transcriptions")
    windowed.feed_window(b" " * 20 + answer, answer)
    assert windowed.finish() == Usage(unit="seconds", quantity=2.5)
    text = MediaBodyParser("transcriptions")
    text.feed(b"  hello {not json}")
    assert text.finish() is None


def test_zero_and_fractional_seconds_are_billed_as_said() -> None:
    assert media_usage("transcriptions", {"text": "", "duration": 0}) == Usage(
        unit="seconds", quantity=0.0
    )
    assert media_usage("translations", {"usage": {"type": "duration", "seconds": 0.5}}) == Usage(
        unit="seconds", quantity=0.5
    )
    assert media_usage("transcriptions", {"duration": -1}) == Usage(unit="seconds")
    assert media_usage("transcriptions", {"duration": True}) == Usage(unit="seconds")
