"""The facts a policy sees before and after a request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PreRequestContext:
    request_size_bytes: int
    estimated_tokens: int
    model: str
    org_id: str
    app_id: str
    environment: str
    provider: str
    stream: bool
    max_tokens: int | None
    # The deployment's upstream name when ``model`` is an alias; "" when the same.
    upstream_model: str = ""


@dataclass(frozen=True, slots=True)
class PostRequestContext:
    pre: PreRequestContext
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency_ms: int
    response_size_bytes: int
    status_code: int
    cost_usd: float | None
