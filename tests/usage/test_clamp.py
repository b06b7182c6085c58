"""`clamp_usage`: upstream usage bounded by what the request could have used."""

from __future__ import annotations

import logging

import pytest

from policy_sidecar.providers import Usage
from policy_sidecar.usage.clamp import (
    DEFAULT_CONTEXT_WINDOW,
    FLAG_COMPLETION_CAPPED,
    FLAG_PROMPT_CAPPED,
    FLAG_TOTAL_CAPPED,
    FLAG_USAGE_NEGATIVE,
    MIN_PROMPT_CAP,
    PROMPT_ESTIMATE_FACTOR,
    clamp_and_log,
    clamp_usage,
)

E18 = 4 * 10**18


@pytest.mark.parametrize(
    ("usage", "max_tokens", "window", "estimate", "expected", "flags"),
    [
        # In bounds: unchanged.
        (Usage(100, 20, 120, 50, 5), 256, 128_000, 90, Usage(100, 20, 120, 50, 5), ()),
        (Usage(100, 20, 125), None, None, 0, Usage(100, 20, 125), ()),  # slack in total
        # 4e18 total: the parts are sane, the total becomes their sum.
        (Usage(10, 5, E18), 256, 128_000, 10, Usage(10, 5, 15), (FLAG_TOTAL_CAPPED,)),
        (Usage(E18, 5, E18), 256, 128_000, 10, Usage(128_000, 5, 128_005),
         (FLAG_PROMPT_CAPPED, FLAG_TOTAL_CAPPED)),
        # Negative: 0, and a negative total is prompt + completion.
        (Usage(-1005, 20, -1005), 256, None, 90, Usage(0, 20, 20), (FLAG_USAGE_NEGATIVE,)),
        (Usage(100, -1, 99, -4, -2), 256, None, 90, Usage(100, 0, 99, 0, 0),
         (FLAG_USAGE_NEGATIVE,)),
        # Completion above max_tokens, or without it above the window.
        (Usage(10, 5000, 5010), 256, 128_000, 10, Usage(10, 256, 266),
         (FLAG_COMPLETION_CAPPED, FLAG_TOTAL_CAPPED)),
        (Usage(10, 200_000, 200_010), None, 128_000, 10, Usage(10, 128_000, 128_010),
         (FLAG_COMPLETION_CAPPED, FLAG_TOTAL_CAPPED)),
        (Usage(10, E18, E18), None, None, 10, Usage(10, DEFAULT_CONTEXT_WINDOW,
         10 + DEFAULT_CONTEXT_WINDOW), (FLAG_COMPLETION_CAPPED, FLAG_TOTAL_CAPPED)),
        # Prompt above the window; without a window, above the estimate x factor.
        (Usage(200_000, 5, 200_005), 256, 128_000, 10, Usage(128_000, 5, 128_005),
         (FLAG_PROMPT_CAPPED, FLAG_TOTAL_CAPPED)),
        (Usage(10_000_000, 5, 10_000_005), 256, None, 10_000,
         Usage(10_000 * PROMPT_ESTIMATE_FACTOR, 5, 10_000 * PROMPT_ESTIMATE_FACTOR + 5),
         (FLAG_PROMPT_CAPPED, FLAG_TOTAL_CAPPED)),
        (Usage(MIN_PROMPT_CAP, 5, MIN_PROMPT_CAP + 5), 256, None, 10,
         Usage(MIN_PROMPT_CAP, 5, MIN_PROMPT_CAP + 5), ()),
        # Cached above prompt, reasoning above completion.
        (Usage(10, 5, 15, 99, 0), 256, None, 10, Usage(10, 5, 15, 10, 0), (FLAG_PROMPT_CAPPED,)),
        (Usage(10, 5, 15, 0, 9), 256, None, 10, Usage(10, 5, 15, 0, 5),
         (FLAG_COMPLETION_CAPPED,)),
    ],
)  # fmt: skip
def test_clamp_usage(
    usage: Usage,
    max_tokens: int | None,
    window: int | None,
    estimate: int,
    expected: Usage,
    flags: tuple[str, ...],
) -> None:
    out = clamp_usage(
        usage, max_tokens=max_tokens, context_window=window, estimated_prompt=estimate
    )
    assert (out.usage, out.flags) == (expected, flags)
    if not flags:
        assert out.usage is usage
    again = clamp_usage(
        out.usage, max_tokens=max_tokens, context_window=window, estimated_prompt=estimate
    )
    assert again.usage == expected
    assert again.flags == ()


def test_no_usage_stays_none() -> None:
    out = clamp_usage(None, max_tokens=1, context_window=1, estimated_prompt=1)
    assert (out.usage, out.flags) == (None, ())


def test_clamping_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "policy_sidecar.usage.clamp"):
        clamp_and_log(
            Usage(10, 5, E18),
            request_id="r1",
            max_tokens=None,
            context_window=None,
            estimated_prompt=10,
        )
    assert "total_capped" in caplog.text
    assert str(E18) in caplog.text
