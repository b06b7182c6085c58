"""The fake provider stays small whatever a request asks for."""

from __future__ import annotations

from policy_sidecar.fakeprovider.app import MAX_COMPLETION_TOKENS, FakeProvider
from policy_sidecar.providers.base import Route
from policy_sidecar.tokens import load_estimator


def test_an_absurd_max_tokens_is_capped_like_a_real_model() -> None:
    fake = FakeProvider(load_estimator())
    route = Route(provider="openai", operation="chat")
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2**31 - 1,
    }
    usage = fake.usage_for(route, request, cached=0)
    assert usage.completion_tokens == MAX_COMPLETION_TOKENS
    small = fake.usage_for(route, {**request, "max_tokens": 7}, cached=0)
    assert small.completion_tokens == 7
