"""The ``x-ratelimit-*`` headers a client sees are the gateway's, once each, through the
real Envoy: a provider's headers of those names are removed on the way back (they
describe the account every caller shares), with and without a limit of the caller's.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from policy_sidecar.cli.launcher import Stack
from policy_sidecar.fakeprovider.app import RESPONSE_HEADERS_HEADER

from .conftest import stack_of

pytestmark = pytest.mark.e2e

LIMITED, FREE = "ps-limited-key-0123456789abcdef", "ps-free-key-0123456789abcdef"
CONFIG = f"""
version: 1
applications:
  - {{id: limited-app, org_id: hdr-org, keys: [{{environment: dev, key: {LIMITED}}}]}}
  - {{id: free-app, org_id: hdr-org, keys: [{{environment: dev, key: {FREE}}}]}}
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.1, output_price_per_mtok: 1}}
policies:
  - id: rl
    name: fifty a minute
    type: rate_limit
    scope: {{app_id: limited-app}}
    config: {{requests: 50, window: 1m}}
  - id: tok
    name: tokens an hour
    type: token_limit
    scope: {{app_id: limited-app}}
    config: {{limit: 90000, window: 1h, count: total}}
"""
# What OpenAI (and Azure, and most OpenAI-style providers) send about the account.
PROVIDERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-requests": "6ms",
    "X-RateLimit-Limit-Tokens": "2000000",
    "x-ratelimit-remaining-tokens": "1999990",
    "x-ratelimit-reset-tokens": "0s",
    "x-ratelimit-anything-else": "1",
    "anthropic-ratelimit-requests-remaining": "7",  # another name: passes
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_of(tmp_path_factory, "rate-headers", CONFIG)


def chat(stack: Stack, key: str, *, stream: bool) -> list[tuple[str, str]]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    if stream:
        body["stream"] = True
    headers = {
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        RESPONSE_HEADERS_HEADER: json.dumps(PROVIDERS),
    }
    conn = http.client.HTTPConnection("127.0.0.1", stack.listen_port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        return [(k.lower(), v) for k, v in response.getheaders()]
    finally:
        conn.close()


def limit_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.startswith("x-ratelimit-")]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_the_callers_limits_replace_the_providers(stack: Stack, stream: bool) -> None:
    headers = chat(stack, LIMITED, stream=stream)
    ours = dict(limit_headers(headers))
    names = [k for k, _ in limit_headers(headers)]
    assert sorted(names) == sorted(set(names)), headers  # each name once
    assert set(ours) == {
        f"x-ratelimit-{kind}-{unit}"
        for unit in ("requests", "tokens")
        for kind in ("limit", "remaining", "reset")
    }
    assert (ours["x-ratelimit-limit-requests"], ours["x-ratelimit-limit-tokens"]) == (
        "50",
        "90000",
    )
    assert int(ours["x-ratelimit-remaining-requests"]) < 50
    assert ("anthropic-ratelimit-requests-remaining", "7") in headers


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_without_limits_of_its_own_the_caller_sees_none(stack: Stack, stream: bool) -> None:
    headers = chat(stack, FREE, stream=stream)
    assert limit_headers(headers) == [], headers
    assert ("anthropic-ratelimit-requests-remaining", "7") in headers
