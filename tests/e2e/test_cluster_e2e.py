"""The sidecar on a Redis Cluster, end to end: real Envoy, two standalone sidecar
workers whose counters and penalties live on a real three-master cluster
(``POLICY_SIDECAR_REDIS_URL=redis+cluster://…``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from redis.asyncio.cluster import RedisCluster

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.redis_clients import open_redis
from tests.e2e.conftest import usage_records
from tests.redis_cluster import LocalRedisCluster

pytestmark = [pytest.mark.e2e, pytest.mark.redis_cluster]

RUN = uuid.uuid4().hex[:8]
KEYS = {name: f"ps-{name}-{RUN}-0123456789" for name in ("rl", "other", "post")}

CONFIG = f"""
version: 1
applications:
  - {{id: rl-app, org_id: org-{RUN}, keys: [{{environment: dev, key: {KEYS["rl"]}}}]}}
  - {{id: other-app, org_id: other-{RUN}, keys: [{{environment: dev, key: {KEYS["other"]}}}]}}
  - {{id: post-app, org_id: org-{RUN}, keys: [{{environment: dev, key: {KEYS["post"]}}}]}}
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
policies:
  - id: rl-3
    name: three a minute
    type: rate_limit
    config: {{requests: 3, window: 1m, key: app}}
  - id: org-100
    name: a hundred a minute per org
    type: rate_limit
    config: {{requests: 100, window: 1m, key: org}}
  - id: cel-post
    name: small answers
    type: custom_cel
    scope: {{app_id: post-app}}
    config: {{post_check_expression: "completion_tokens < 20", penalty_seconds: 60}}
"""


@pytest.fixture(scope="module")
def cluster_stack(
    tmp_path_factory: pytest.TempPathFactory, redis_cluster: LocalRedisCluster
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("cluster")
    config = workdir / "cluster.yaml"
    config.write_text(CONFIG)
    stack = start_stack(
        workdir, config, workers=2, sidecar_env={"POLICY_SIDECAR_REDIS_URL": redis_cluster.url}
    )
    try:
        yield stack
    finally:
        stack.stop()


def chat(stack: Stack, key: str, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], **extra
    )


async def _keys_of_org(cluster: LocalRedisCluster, org: str) -> list[bytes]:
    """The org's counter keys, read from the node that serves the org's slot."""
    client = open_redis(cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        node = client.get_node_from_key(f"ps:{{org:{org}}}")
        keys: list[bytes] = await client.keys(f"ps:{{org:{org}}}:*", target_nodes=node)
        return keys
    finally:
        await client.aclose()


def test_a_rate_limit_is_exact_across_workers_on_the_cluster(
    cluster_stack: Stack, redis_cluster: LocalRedisCluster
) -> None:
    # Two workers, one counter on the cluster: the fourth request is refused whichever
    # worker Envoy sends it to.
    remaining = [
        chat(cluster_stack, KEYS["rl"]).headers["x-ratelimit-remaining-requests"] for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as info:
        chat(cluster_stack, KEYS["rl"])
    assert info.value.response.status_code == 429
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 120
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "rate_limit_exceeded"
    assert body["details"]["policy_id"] == "rl-3"
    # Another org's app (another hash tag, most likely another node) has its own count.
    assert chat(cluster_stack, KEYS["other"]).headers["x-ratelimit-remaining-requests"] == "2"
    # The counters are on the cluster, under the org's hash tag: the app's and the
    # org's counter of a request in one slot, checked by one script.
    keys = asyncio.run(_keys_of_org(redis_cluster, f"org-{RUN}"))
    assert any(b":app:rl-app:rl-3:" in k for k in keys), keys
    assert any(b":org:org-100:" in k for k in keys), keys


def test_a_post_check_penalty_is_shared_through_the_cluster(cluster_stack: Stack) -> None:
    rid = f"post-{RUN}"
    raw = chat(cluster_stack, KEYS["post"], max_tokens=25, extra_headers={"x-request-id": rid})
    assert raw.http_response.status_code == 200
    [record] = usage_records(cluster_stack, {rid})
    assert record["post_violations"] == ["cel-post"]
    # Both workers read the penalty from the cluster.
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            chat(cluster_stack, KEYS["post"], max_tokens=5)
        assert info.value.body["code"] == "policy_penalty"  # type: ignore[index]
