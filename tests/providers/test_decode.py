"""Content-encoding of responses: which label decodes with which framing, a corrupt
stream reports nothing, the inflate cap at its exact edge (found by mutation testing,
docs/testing.md)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from policy_sidecar.providers import Usage
from policy_sidecar.providers._decode import (
    MAX_INFLATED,
    DecodingParser,
    NoUsageParser,
    with_encoding,
)

CHAT = (
    b'{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
)


class Recording:
    """An inner parser that keeps what it was fed; its usage is fixed."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def feed_window(self, head: bytes, tail: bytes) -> None:
        raise AssertionError("never windowed")

    def finish(self) -> Usage | None:
        return Usage(1, 1, 2)


@pytest.mark.parametrize(
    ("label", "packed"),
    [
        ("gzip", gzip.compress(CHAT)),
        ("x-gzip", gzip.compress(CHAT)),
        (" GZip ", gzip.compress(CHAT)),
        ("deflate", zlib.compress(CHAT)),
    ],
)
def test_each_label_inflates_with_its_framing(label: str, packed: bytes) -> None:
    inner = Recording()
    parser = with_encoding(inner, label)
    assert isinstance(parser, DecodingParser)
    parser.feed(packed)
    assert parser.finish() == Usage(1, 1, 2)
    assert bytes(inner.data) == CHAT
    assert parser.inflated == len(CHAT)


@pytest.mark.parametrize(
    ("label", "packed"),
    [("gzip", zlib.compress(CHAT)), ("deflate", gzip.compress(CHAT))],
)
def test_the_label_decides_the_framing_nothing_is_guessed(label: str, packed: bytes) -> None:
    parser = DecodingParser(Recording(), label)
    parser.feed(packed)
    assert parser.finish() is None


@pytest.mark.parametrize("label", [None, "", " ", "identity", " Identity "])
def test_identity_is_the_parser_itself(label: str | None) -> None:
    inner = Recording()
    assert with_encoding(inner, label) is inner


@pytest.mark.parametrize("label", ["br", "zstd", "compress"])
def test_other_encodings_report_no_usage_and_never_raise(label: str) -> None:
    parser = with_encoding(Recording(), label)
    assert isinstance(parser, NoUsageParser)
    parser.feed(b"\x00\xff")
    parser.feed_window(b"a", b"b")
    assert parser.finish() is None


def test_a_corrupt_trailer_reports_no_usage_though_the_body_was_read() -> None:
    packed = bytearray(gzip.compress(CHAT))
    packed[-8] ^= 0xFF  # the CRC32
    inner = Recording()
    parser = DecodingParser(inner, "gzip")
    parser.feed(bytes(packed[:-8]))
    assert bytes(inner.data) == CHAT
    parser.feed(bytes(packed[-8:]))
    assert parser.finish() is None
    parser.feed(gzip.compress(CHAT))  # nothing more is inflated once failed
    assert parser.inflated == len(CHAT)


def test_a_windowed_compressed_body_reports_no_usage() -> None:
    parser = DecodingParser(Recording(), "gzip")
    parser.feed_window(b"head", b"tail")
    assert parser.finish() is None


def test_exactly_the_inflate_cap_is_read_one_byte_more_is_not() -> None:
    for size, expected in ((MAX_INFLATED, Usage(1, 1, 2)), (MAX_INFLATED + 1, None)):
        packer = zlib.compressobj(1)
        packed = packer.compress(bytes(size)) + packer.flush()
        parser = DecodingParser(Counting(), "deflate")
        parser.feed(packed)
        assert parser.finish() == expected, size


class Counting(Recording):
    """A Recording that only counts (64 MiB would be held otherwise)."""

    def feed(self, chunk: bytes) -> None:
        pass
