"""Rate limits, token limits and CEL policies through the real Envoy, with counters on
the real Redis shared by two sidecar worker processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from policy_sidecar.cli.launcher import Stack, start_stack
from tests.e2e.conftest import usage_records

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = uuid.uuid4().hex[:8]  # a fresh org per run: Redis counters outlive the test
KEYS = {name: f"ps-{name}-{RUN}-0123456789" for name in ("rl", "tok", "cel", "post")}

CONFIG = f"""
version: 1
applications:
  - {{id: rl-app, org_id: org-{RUN}, keys: [{{environment: dev, key: {KEYS["rl"]}}}]}}
  - {{id: tok-app, org_id: org-{RUN}, keys: [{{environment: dev, key: {KEYS["tok"]}}}]}}
  - {{id: cel-app, org_id: org-{RUN}, keys: [{{environment: dev, key: {KEYS["cel"]}}}]}}
  - {{id: post-app, org_id: org-{RUN}, keys: [{{environment: dev, key: {KEYS["post"]}}}]}}
policies:
  - id: rl-3
    name: three a minute
    type: rate_limit
    scope: {{app_id: rl-app}}
    config: {{requests: 3, window: 1m}}
  - id: tok-300
    name: 300 tokens an hour
    type: token_limit
    scope: {{app_id: tok-app}}
    config: {{limit: 300, window: 1h, count: total}}
  - id: cel-short
    name: short prompts only
    type: custom_cel
    scope: {{app_id: cel-app}}
    config: {{pre_check_expression: "estimated_tokens < 40 && model.startsWith('gpt-4o')"}}
  - id: cel-post
    name: small answers
    type: custom_cel
    scope: {{app_id: post-app}}
    config: {{post_check_expression: "completion_tokens < 20", penalty_seconds: 60}}
"""


@pytest.fixture(scope="module")
def limits_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("limits")
    config = workdir / "limits.yaml"
    config.write_text(CONFIG)
    stack = start_stack(
        workdir, config, workers=2, sidecar_env={"POLICY_SIDECAR_REDIS_URL": REDIS_URL}
    )
    try:
        yield stack
    finally:
        stack.stop()


def chat(stack: Stack, key: str, content: str = "hi", **extra: Any) -> Any:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **extra
    )


def test_rate_limit_is_exact_across_workers_then_429_with_retry_after(limits_stack: Stack) -> None:
    remaining = []
    for _ in range(3):
        raw = chat(limits_stack, KEYS["rl"])
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as info:
        chat(limits_stack, KEYS["rl"])
    response = info.value.response
    assert response.status_code == 429
    # Sliding window: the earliest retry can be up to two window lengths away when the
    # requests straddled a bucket boundary.
    assert 1 <= int(response.headers["retry-after"]) <= 120
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "rate_limit_exceeded"
    details = body["details"]
    assert (details["policy_id"], details["policy_name"], details["limit"]) == (
        "rl-3",
        "three a minute",
        3,
    )
    assert details["window"] == "1m"
    assert "resets_at" in details


def test_token_limit_reserves_then_settles_to_actual_usage(limits_stack: Stack) -> None:
    ids = []
    with pytest.raises(openai.RateLimitError) as info:  # noqa: PT012 - loop until denied
        for i in range(20):
            rid = f"tok-{RUN}-{i}"
            raw = chat(
                limits_stack, KEYS["tok"], max_tokens=40, extra_headers={"x-request-id": rid}
            )
            ids.append(rid)
            assert raw.headers["x-ratelimit-limit-tokens"] == "300"
    assert info.value.body["code"] == "token_limit_exceeded"  # type: ignore[index]
    assert info.value.response.headers["retry-after"]
    records = usage_records(limits_stack, set(ids), count=len(ids))
    used = sum(r["total_tokens"] for r in records)
    # Each request reserved its prompt estimate + half of max_tokens (20) and settled to
    # its real total. Admission never lets reservations pass the limit, so the real
    # total can pass it only by the last request's under-reservation...
    reserved = [r["estimated_tokens"] + 20 for r in records]
    assert used <= 300 + max(r["total_tokens"] for r in records) - min(reserved)
    # ...and the denial was deserved: the next reservation did not fit.
    assert used + reserved[-1] > 300
    assert len(ids) >= 3


def test_cel_pre_check_denies_with_403(limits_stack: Stack) -> None:
    assert chat(limits_stack, KEYS["cel"], "hi").http_response.status_code == 200
    with pytest.raises(openai.PermissionDeniedError) as info:
        chat(limits_stack, KEYS["cel"], "word " * 100)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "policy_violation"
    assert body["details"]["policy_id"] == "cel-short"
    assert "estimated_tokens < 40" in body["details"]["expression"]


def test_cel_post_check_violation_is_recorded_and_penalises(limits_stack: Stack) -> None:
    rid = f"post-{RUN}"
    raw = chat(limits_stack, KEYS["post"], max_tokens=25, extra_headers={"x-request-id": rid})
    assert raw.http_response.status_code == 200  # the answer was already sent
    [record] = usage_records(limits_stack, {rid})
    assert record["post_violations"] == ["cel-post"]
    with pytest.raises(openai.RateLimitError) as info:
        chat(limits_stack, KEYS["post"], max_tokens=5)
    assert info.value.body["code"] == "policy_penalty"  # type: ignore[index]
    # The denial names the post-check policy that imposed the penalty.
    assert info.value.body["details"]["policy_id"] == "cel-post"  # type: ignore[index]
    assert 50 <= int(info.value.response.headers["retry-after"]) <= 60
