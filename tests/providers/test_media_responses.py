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
from policy_sidecar.providers._usage import FULL_PARSE_LIMIT, TAIL_BYTES


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


def test_an_error_answer_bills_nothing_whatever_else_it_holds() -> None:
    error = {"error": {"message": "bad file", "type": "invalid_request_error"}}
    assert media_usage("transcriptions", {**error, "duration": 3}) is None
    assert media_usage("images", {**error, "data": [{"url": "u"}]}) is None
    assert media_usage("moderations", {**error, "results": []}) is None


def test_a_large_edit_answer_is_counted_by_its_keys_like_a_generation() -> None:
    image = {"b64_json": "A" * 400_000}
    body = json.dumps({"data": [image] * 4, "size": "1024x1024", "quality": "low"}).encode()
    parser = media_usage_parser("image_edits", streaming=False)
    for i in range(0, len(body), 65_536):
        parser.feed(body[i : i + 65_536])
    assert parser.finish() == Usage(unit="images", quantity=4.0, price_key="1024x1024/low")


def test_tokens_follow_the_answers_own_total_else_their_sum() -> None:
    own = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 20}
    assert media_usage("images", {"data": [], "usage": own}) == Usage(
        5, 7, 20, unit="images", quantity=0.0
    )
    summed = {"input_tokens": 5, "output_tokens": 7}
    assert media_usage("transcriptions", {"duration": 1, "usage": summed}) == Usage(
        5, 7, 12, unit="seconds", quantity=1.0
    )


def test_an_image_price_key_needs_both_size_and_quality() -> None:
    assert media_usage("images", {"data": [{}], "size": "1024x1024"}) == Usage(
        unit="images", quantity=1.0
    )
    assert media_usage("images", {"data": [{}], "quality": "hd"}) == Usage(
        unit="images", quantity=1.0
    )


def test_a_json_answer_starting_with_whitespace_in_its_first_chunk() -> None:
    parser = MediaBodyParser("transcriptions")
    parser.feed(b'\n {"duration": 2}')
    assert parser.finish() == Usage(unit="seconds", quantity=2.0)


def sized_transcription(size: int) -> bytes:
    """A transcription answer of exactly ``size`` bytes, its duration first."""
    head, tail = b'{"duration": 7.5, "text": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def test_an_answer_up_to_the_parse_limit_is_read_whole_one_byte_more_from_its_tail() -> None:
    """Read whole, the duration at the front counts; past the limit only the tail is
    kept (64 KiB), where a duration at the front is not."""
    limit = FULL_PARSE_LIMIT + TAIL_BYTES
    for size, expected in ((limit, 7.5), (limit + 1, None)):
        parser = MediaBodyParser("transcriptions")
        body = sized_transcription(size)
        for i in range(0, size, 65_536):
            parser.feed(body[i : i + 65_536])
        assert parser.finish() == Usage(unit="seconds", quantity=expected), size


def test_a_large_answer_is_held_only_as_its_tail_and_read_across_chunks() -> None:
    text = "é" * 1_000_001  # 2 MB of two-byte characters
    body = json.dumps({"text": text, "duration": 12.25}, ensure_ascii=False).encode()
    parser = MediaBodyParser("transcriptions")
    step = 65_537  # odd: the tail starts inside a character
    last = len(body) - 8  # the final chunk cuts the duration's value
    for i in range(0, last, step):
        was_cut = parser._truncated
        parser.feed(body[i : min(i + step, last)])
        held = sum(len(chunk) for chunk in parser._chunks)
        assert held <= FULL_PARSE_LIMIT + TAIL_BYTES
        if parser._truncated and not was_cut:  # the first cut keeps only the tail
            assert held == TAIL_BYTES
    parser.feed(body[last:])
    assert parser.finish() == Usage(unit="seconds", quantity=12.25)


def test_the_cut_keeps_the_tails_bytes_as_sent() -> None:
    """One byte past the limit, the last chunk (cutting the duration's value) makes
    the cut: the chunks it joins must join byte for byte."""
    head, tail = b'{"text": "', b'", "duration": 12.25}'
    size = FULL_PARSE_LIMIT + TAIL_BYTES + 1
    body = head + b"a" * (size - len(head) - len(tail)) + tail
    parser = MediaBodyParser("transcriptions")
    last = size - 4
    for i in range(0, last, 4096):
        parser.feed(body[i : min(i + 4096, last)])
    parser.feed(body[last:])
    assert parser.finish() == Usage(unit="seconds", quantity=12.25)
