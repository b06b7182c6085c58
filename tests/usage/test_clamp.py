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
        # Negative: a prompt is the estimate, never 0; without an estimate of what was
        # delivered a completion is 0; the total is their sum; cached, reasoning: 0.
        (Usage(-1005, 20, -1005), 256, None, 90, Usage(90, 20, 110), (FLAG_USAGE_NEGATIVE,)),
        (Usage(-1005, 20, 5000), 256, None, 90, Usage(90, 20, 110), (FLAG_USAGE_NEGATIVE,)),
        (Usage(100, -1, 99, -4, -2), 256, None, 90, Usage(100, 0, 100, 0, 0),
         (FLAG_USAGE_NEGATIVE,)),
        (Usage(100, 20, -1), 256, None, 90, Usage(100, 20, 120), (FLAG_USAGE_NEGATIVE,)),
        # An estimate far above the window is still capped by it.
        (Usage(-1, 20, 19), 256, 1000, 5000, Usage(1000, 20, 1020),
         (FLAG_USAGE_NEGATIVE, FLAG_PROMPT_CAPPED)),
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


@pytest.mark.parametrize(
    ("usage", "delivered", "expected"),
    [
        (Usage(100, -7, 93), 42, Usage(100, 42, 142)),
        (Usage(-3, -7, -10, 5, 2), 42, Usage(90, 42, 132, 5, 2)),
        (Usage(100, -7, 93), 10_000, Usage(100, 256, 356)),  # never past max_tokens
    ],
)
def test_a_rejected_count_is_charged_what_is_known(
    usage: Usage, delivered: int, expected: Usage
) -> None:
    asked: list[int] = []

    def estimate() -> int:
        asked.append(delivered)
        return delivered

    out = clamp_usage(
        usage,
        max_tokens=256,
        context_window=None,
        estimated_prompt=90,
        estimated_completion=estimate,
    )
    assert out.usage == expected
    assert FLAG_USAGE_NEGATIVE in out.flags and out.estimated
    assert asked == [delivered]  # asked once, only for a rejected completion


def test_the_completion_estimate_is_not_computed_when_not_needed() -> None:
    def estimate() -> int:
        raise AssertionError("not needed")

    for usage in (Usage(100, 20, 120), Usage(-1, 20, 19), Usage(10**30, 20, 10**30)):
        out = clamp_usage(
            usage,
            max_tokens=256,
            context_window=None,
            estimated_prompt=90,
            estimated_completion=estimate,
        )
        assert out.estimated == (usage.prompt_tokens < 0)


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
