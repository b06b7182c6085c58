"""Helpers for the store tests: generated usage records, a recording publisher."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from policy_sidecar.store.invalidation import PolicyChange
from policy_sidecar.usage.record import Outcome, UsageRecord


class RecordingPublisher:
    def __init__(self) -> None:
        self.changes: list[PolicyChange] = []

    async def publish(self, change: PolicyChange) -> None:
        self.changes.append(change)


ORGS = ("acme", "globex", None)
APPS = ("app_a", "app_b", "app_c", "app_d", None)
ENVS = ("dev", "production", None)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet", None)
DECISIONS: tuple[Outcome, ...] = ("allow",) * 7 + ("deny", "incomplete", "error")
POLICIES = ("pol_rate", "pol_tokens", "pol_size", None)


def make_records(
    n: int, *, start: datetime, span: timedelta, seed: int = 1, prefix: str = "req"
) -> list[UsageRecord]:
    rng = random.Random(seed)
    seconds = span.total_seconds()
    out = []
    for i in range(n):
        decision = rng.choice(DECISIONS)
        served = rng.choice(MODELS)
        prompt = rng.randrange(0, 5000)
        completion = 0 if decision == "deny" else rng.randrange(0, 2000)
        out.append(
            UsageRecord(
                request_id=f"{prefix}-{i}",
                started_at=start + timedelta(seconds=rng.random() * seconds),
                decision=decision,
                status_code=429 if decision == "deny" else rng.choice((200, 200, 200, 500, 400)),
                org_id=rng.choice(ORGS),
                app_id=rng.choice(APPS),
                environment=rng.choice(ENVS),
                api_key_id="key_1",
                provider="openai",
                operation="chat",
                requested_model=rng.choice(MODELS),
                served_model=served,
                streamed=rng.random() < 0.5,
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
                cached_tokens=rng.randrange(0, 100),
                reasoning_tokens=rng.randrange(0, 50),
                estimated_tokens=prompt,
                usage_reported=decision == "allow",
                latency_ms=None if rng.random() < 0.1 else rng.random() * 3000,
                ttft_ms=rng.random() * 500,
                request_bytes=rng.randrange(100, 50_000),
                response_bytes=rng.randrange(0, 50_000),
                cost_usd=None if rng.random() < 0.1 else round(rng.random() / 10, 8),
                denied_by=rng.choice(POLICIES) if decision == "deny" else None,
                shadow_violations=("pol_shadow",) if rng.random() < 0.05 else (),
                post_violations=(),
            )
        )
    return out
