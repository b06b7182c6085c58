"""What to charge for a response that reported no (or only partial) usage. Pure.

A stream the client cut short, or a stream that never sent its usage chunk, was still
billed by the provider for its prompt and for every token it delivered. Such a request
is charged the prompt estimate plus the completion tokens estimated from what was
delivered (`providers.delivered`); the record says ``usage_reported = False``, which
marks its token counts as the sidecar's estimate. Counters settle to the same numbers,
so they are never refunded below what was delivered, and never below the prompt
estimate that a reservation settled without usage keeps.
"""

from __future__ import annotations

import tiktoken

from policy_sidecar.providers.base import Usage
from policy_sidecar.tokens.delivered import DeliveredText, estimate_completion

__all__ = ["delivered_completion", "estimated_usage"]

# Operations that generate no completion tokens: nothing delivered is charged as output.
_NO_COMPLETION = frozenset({"embeddings", "embed", "batch_embed"})
# Embedding routes whose answers carry no usage at all (Gemini's embedContent and
# batchEmbedContents): a 2xx answer is charged the prompt estimate.
_NO_USAGE_REPORTED = frozenset({"embed", "batch_embed"})


def estimated_usage(
    reported: Usage | None,
    *,
    complete: bool,
    streamed: bool,
    status: int,
    operation: str | None,
    estimated_prompt: int,
    max_tokens: int | None,
    delivered: DeliveredText | None,
    response_bytes: int,
    encoding: tiktoken.Encoding,
) -> Usage | None:
    """The estimated usage to charge instead of ``reported``, or None to keep it.

    Applies to responses cut short (any status but an error one) and to complete
    streamed 2xx responses without a usage report. A partial report (an Anthropic
    stream cut after ``message_start``) keeps its prompt count and is raised to the
    delivered completion estimate when that is higher.
    """
    ok = status == 0 or 200 <= status < 300
    if ok and complete and reported is None and operation in _NO_USAGE_REPORTED:
        prompt = max(estimated_prompt, 0)
        return Usage(prompt_tokens=prompt, total_tokens=prompt)
    if not ok or (complete and (reported is not None or not streamed)):
        return None
    completion = delivered_completion(
        delivered if streamed else None,
        operation=operation,
        response_bytes=response_bytes,
        max_tokens=max_tokens,
        encoding=encoding,
    )
    if reported is not None:
        if completion <= reported.completion_tokens:
            return None
        prompt = reported.prompt_tokens
    else:
        prompt = max(estimated_prompt, 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=reported.cached_tokens if reported is not None else 0,
    )


def delivered_completion(
    delivered: DeliveredText | None,
    *,
    operation: str | None,
    response_bytes: int,
    max_tokens: int | None,
    encoding: tiktoken.Encoding,
) -> int:
    """The completion tokens a response delivered, estimated from its text (``delivered``
    fed with what the capture saw), else from its bytes (a JSON body cut short: its
    bytes are nearly all content); 0 for operations that generate none."""
    if operation in _NO_COMPLETION:
        return 0
    return estimate_completion(
        delivered or DeliveredText(),
        response_bytes=response_bytes,
        encoding=encoding,
        max_tokens=max_tokens,
    )
