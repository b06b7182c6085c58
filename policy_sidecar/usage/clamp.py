"""Usage an upstream reports, clamped to what the request could have used.

The upstream's numbers settle token counters shared by every request of an
application and are billed: one response reporting ``total_tokens: 4e18`` would lock
the application out for the counter's window, a negative one would lower the counter
for everybody. So each reported field is bounded at the edge, before it is settled
or recorded (docs/usage-recording.md, "Bounds"):

* negative → what is known instead, never 0 for a count that is charged (flag
  ``usage_negative``; `Clamped.estimated`): the prompt → the sidecar's prompt estimate,
  the completion → ``estimated_completion()`` (the caller's estimate from the text the
  response delivered; 0 without one), and the total → their sum; cached and reasoning
  tokens (parts of those, never charged on their own) → 0;
* prompt above the model's context window → the context window; when the catalog
  does not know the window, above ``max(estimate * PROMPT_ESTIMATE_FACTOR,
  MIN_PROMPT_CAP)`` (at most `DEFAULT_CONTEXT_WINDOW`) → that (``prompt_capped``);
* completion above the request's max output tokens, or without one the context window
  → that (``completion_capped``);
* cached above prompt, reasoning above completion → capped to them (flagged as above);
* a negative total, or one reported with a negative prompt or completion → prompt +
  completion;
* total above prompt + completion + slack (providers may count a little more, e.g.
  Gemini's tool-use prompt) → prompt + completion (``total_capped``).

Pure: `clamp_usage` returns the bounded usage and its flags; the caller logs them and
puts the flags on the usage record, whose recorder counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from policy_sidecar.providers.base import Usage

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "FLAG_COMPLETION_CAPPED",
    "FLAG_PROMPT_CAPPED",
    "FLAG_TOTAL_CAPPED",
    "FLAG_USAGE_NEGATIVE",
    "MIN_PROMPT_CAP",
    "PROMPT_ESTIMATE_FACTOR",
    "Clamped",
    "clamp_and_log",
    "clamp_usage",
]

log = logging.getLogger(__name__)

#: Used when the model catalog has no context window for the model: as large as the
#: largest windows offered (2M tokens), so no real request is ever capped by it.
DEFAULT_CONTEXT_WINDOW: Final = 2_000_000
#: Without a known window, a prompt may exceed the sidecar's estimate this many times
#: (images, tool definitions and tokenizer differences are not in the estimate).
PROMPT_ESTIMATE_FACTOR: Final = 16
#: ... and is never capped below this many tokens.
MIN_PROMPT_CAP: Final = 32_768

FLAG_USAGE_NEGATIVE: Final = "usage_negative"
FLAG_PROMPT_CAPPED: Final = "prompt_capped"
FLAG_COMPLETION_CAPPED: Final = "completion_capped"
FLAG_TOTAL_CAPPED: Final = "total_capped"


@dataclass(frozen=True, slots=True)
class Clamped:
    usage: Usage | None
    flags: tuple[str, ...] = ()
    # The prompt or completion count is the sidecar's estimate (the upstream's was
    # negative): the record says ``usage_reported = False``.
    estimated: bool = False


def clamp_usage(
    usage: Usage | None,
    *,
    max_tokens: int | None,
    context_window: int | None,
    estimated_prompt: int,
    estimated_completion: Callable[[], int] | None = None,
) -> Clamped:
    """`usage` bounded as the module doc says; unchanged (same object) when in bounds.
    ``estimated_completion`` is called only when the reported completion is negative."""
    if usage is None:
        return Clamped(None)
    flags: list[str] = []
    values = [
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
    ]
    # A negative prompt or completion is rejected: charging 0 for it would let an
    # upstream (or whatever answers as one) under-charge. What is known is kept instead.
    estimated = usage.prompt_tokens < 0 or usage.completion_tokens < 0
    total_unknown = usage.total_tokens < 0 or estimated
    if any(v < 0 for v in values):
        flags.append(FLAG_USAGE_NEGATIVE)
        values = [max(v, 0) for v in values]
    prompt, completion, total, cached, reasoning = values
    if usage.prompt_tokens < 0:
        prompt = max(estimated_prompt, 0)
    if usage.completion_tokens < 0 and estimated_completion is not None:
        completion = max(estimated_completion(), 0)
    window = context_window if context_window and context_window > 0 else None
    if window is not None:
        prompt_cap = window
    elif estimated_prompt > 0:
        prompt_cap = min(
            max(estimated_prompt * PROMPT_ESTIMATE_FACTOR, MIN_PROMPT_CAP), DEFAULT_CONTEXT_WINDOW
        )
    else:
        prompt_cap = DEFAULT_CONTEXT_WINDOW
    if max_tokens is not None and max_tokens > 0:
        completion_cap = max_tokens
    else:
        completion_cap = window or DEFAULT_CONTEXT_WINDOW
    if prompt > prompt_cap:
        prompt = prompt_cap
        flags.append(FLAG_PROMPT_CAPPED)
    if completion > completion_cap:
        completion = completion_cap
        flags.append(FLAG_COMPLETION_CAPPED)
    if cached > prompt:
        cached = prompt
        _flag(flags, FLAG_PROMPT_CAPPED)
    if reasoning > completion:
        reasoning = completion
        _flag(flags, FLAG_COMPLETION_CAPPED)
    if total_unknown:
        total = prompt + completion
    elif total > prompt + completion and total > prompt_cap + completion_cap:
        total = prompt + completion
        flags.append(FLAG_TOTAL_CAPPED)
    elif (FLAG_PROMPT_CAPPED in flags or FLAG_COMPLETION_CAPPED in flags) and (
        total > prompt + completion
    ):
        total = prompt + completion  # the parts were bogus: so is a total built on them
        flags.append(FLAG_TOTAL_CAPPED)
    if not flags:
        return Clamped(usage)
    return Clamped(
        replace(
            usage,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
        ),
        tuple(flags),
        estimated,
    )


def _flag(flags: list[str], flag: str) -> None:
    if flag not in flags:
        flags.append(flag)


def clamp_and_log(
    usage: Usage | None,
    *,
    request_id: str,
    max_tokens: int | None,
    context_window: int | None,
    estimated_prompt: int,
    estimated_completion: Callable[[], int] | None = None,
) -> Clamped:
    """`clamp_usage`, with one WARNING line when something was clamped."""
    clamped = clamp_usage(
        usage,
        max_tokens=max_tokens,
        context_window=context_window,
        estimated_prompt=estimated_prompt,
        estimated_completion=estimated_completion,
    )
    if clamped.flags:
        log.warning(
            "upstream usage out of bounds, clamped (%s): reported %s, kept %s",
            ", ".join(clamped.flags),
            usage,
            clamped.usage,
            extra={"event": "usage_clamped", "request_id": request_id[:128]},
        )
    return clamped
