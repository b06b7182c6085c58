"""Property: any split of a stream into chunks gives the same usage as the whole stream."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_sidecar.providers import Usage, default_registry
from tests.providers.test_usage_fixtures import CASES, FIXTURES

REGISTRY = default_registry()
STREAMS = [(path, fixture, expected) for path, fixture, streaming, expected in CASES if streaming]


def _variants(body: bytes) -> list[bytes]:
    """The stream as written, with CRLF, with bare CR, with `data:` lacking its space."""
    lf = body.replace(b"\r\n", b"\n")
    out = [body, lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r")]
    if b"data: " in lf:
        out.append(lf.replace(b"data: ", b"data:"))
        # comments and keep-alives between events
        out.append(lf.replace(b"\n\n", b"\n\n: keep-alive\n\n"))
    return out


def _usage(path: str, chunks: list[bytes]) -> Usage | None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=True)
    for chunk in chunks:
        parser.feed(chunk)
    return parser.finish()


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    return [body[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(STREAMS),
    variant=st.integers(min_value=0, max_value=4),
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=40),
    empties=st.booleans(),
)
def test_any_split_gives_same_usage(
    case: tuple[str, str, Usage], variant: int, cuts: list[int], empties: bool
) -> None:
    path, fixture, expected = case
    variants = _variants((FIXTURES / fixture).read_bytes())
    body = variants[variant % len(variants)]
    chunks = _split(body, cuts)
    if empties:  # empty chunks (e.g. between a CR and its LF) must change nothing
        chunks = [piece for chunk in chunks for piece in (chunk, b"")]
    assert _usage(path, chunks) == expected


@settings(max_examples=40, deadline=None)
@given(case=st.sampled_from(STREAMS), garbage=st.binary(max_size=300), at=st.integers(0, 10**6))
def test_garbage_never_raises(case: tuple[str, str, Usage], garbage: bytes, at: int) -> None:
    path, fixture, _ = case
    body = (FIXTURES / fixture).read_bytes()
    at %= len(body) + 1
    result = _usage(path, [body[:at], garbage, body[at:]])
    assert result is None or isinstance(result, Usage)


@settings(max_examples=40, deadline=None)
@given(
    path=st.sampled_from([p for p, _, _, _ in CASES]),
    body=st.binary(max_size=500),
    streaming=st.booleans(),
)
def test_random_bytes_never_raise(path: str, body: bytes, streaming: bool) -> None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    parser = found[0].usage_parser(found[1], streaming=streaming, content_encoding="gzip")
    parser.feed(body)
    assert parser.finish() is None
    plain = found[0].usage_parser(found[1], streaming=streaming)
    plain.feed(body)
    plain.finish()


def test_every_provider_stream_format_is_covered() -> None:
    covered = {Path(fixture).parts[0] for _, fixture, _ in STREAMS}
    assert covered == set(REGISTRY.names)
