"""The SSE usage parser skips whole events before the first needle without decoding them
(`SSEUsageParser._skippable`): whatever the line endings and wherever the chunks or the
capture's head and tail are cut, it reports exactly what decoding every event reports."""

from __future__ import annotations

from typing import Any

import pytest

from policy_sidecar.providers import Route, Usage
from policy_sidecar.providers._usage import SSEUsageParser, std_usage
from policy_sidecar.providers.base import UsageParser
from tests.providers.test_windows import CASES, REGISTRY, _sample

SSE_CASES = [c for c in CASES if c[0].endswith("-sse")]
ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def _parser(route: Route) -> UsageParser:
    return REGISTRY.get(route.provider).usage_parser(route, streaming=True)


def _unskipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SSEUsageParser, "_skippable", lambda self, chunk: 0)


def _body(route: Route, request: dict[str, Any], extra: dict[str, Any], ending: bytes) -> bytes:
    body = _sample(route, request, extra).body.replace(b"\r\n", b"\n")
    return body.replace(b"\n", ending)


def _split_results(route: Route, body: bytes) -> list[Usage | None]:
    out = []
    for cut in range(0, len(body) + 1, 13):
        parser = _parser(route)
        parser.feed(body[:cut])
        parser.feed(body[cut:])
        out.append(parser.finish())
    return out


def _window_results(route: Route, body: bytes) -> list[Usage | None]:
    out = []
    for head in range(0, len(body), 241):
        for tail in range(0, len(body), 227):
            parser = _parser(route)
            parser.feed_window(body[:head], body[len(body) - tail :])
            out.append(parser.finish())
    return out


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
@pytest.mark.parametrize(
    ("name", "route", "request_", "extra"), SSE_CASES, ids=[c[0] for c in SSE_CASES]
)
def test_skipping_reports_what_decoding_every_event_does(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    route: Route,
    request_: dict[str, Any],
    extra: dict[str, Any],
    ending: bytes,
) -> None:
    body = _body(route, request_, extra, ending)
    whole = _parser(route)
    whole.feed(body)
    found = whole.finish()
    assert found is not None and found.total_tokens > 0, name
    split = _split_results(route, body)
    window = _window_results(route, body)
    with monkeypatch.context() as m:
        _unskipped(m)
        assert _split_results(route, body) == split
        assert _window_results(route, body) == window
    assert split == [found] * len(split)


def test_whole_events_before_the_first_needle_are_skipped() -> None:
    parser = SSEUsageParser(lambda obj: None, std_usage, ('"n"',), merge=False)
    events = b"".join(b'data: {"x": %d}\n\n' % i for i in range(20))
    assert parser._skippable(events + b'data: {"n": 7}\n\ndata: [DONE]\n\n') == len(events)
    # No needle: the whole events go, the unfinished one stays (a needle may follow).
    assert parser._skippable(events + b'data: {"') == len(events)
    assert parser._skippable(b'data: {"n"') == 0


def test_nothing_is_skipped_inside_an_event() -> None:
    parser = _parser(Route("openai", "chat"))
    parser.feed(b'data: {"usage": {"prompt_tokens": 3, "completion_tokens"')
    parser.feed(b': 4}}\n\ndata: {"x": 1}\n\n')
    assert parser.finish() == Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)


def test_a_needle_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        SSEUsageParser(lambda obj: None, std_usage, ('"a"\n',), merge=False)
