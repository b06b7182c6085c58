"""The sidecar on a Redis Cluster, end to end: real Envoy, two sidecar workers whose
counters and penalties live on a real three-master cluster
(``POLICY_SIDECAR_REDIS_URL=redis+cluster://…``), in standalone mode and in production
mode (Postgres; a policy change published through the cluster applies at once)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from redis.asyncio.cluster import RedisCluster

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.redis_clients import open_redis
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationRepository,
    ModelRepository,
    PolicyRepository,
    migrate,
    open_pool,
)
from policy_sidecar.store.records import Policy
from policy_sidecar.store.redis_publisher import RedisPolicyChangePublisher
from tests.e2e.conftest import at_once, usage_records
from tests.log_secrets import register as register_secret
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

    def refused(_: int) -> Any:
        with pytest.raises(openai.RateLimitError) as info:
            chat(cluster_stack, KEYS["post"], max_tokens=5)
        return info.value.body["code"]  # type: ignore[index]

    # Both workers read the penalty from the cluster (a burst reaches both).
    assert at_once(refused) == ["policy_penalty"] * 8


# -- production mode: Postgres + the cluster ---------------------------------------

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PROPAGATION = 30.0  # generous on a loaded machine; the caches live far longer
CACHE_SECONDS = 600


@dataclass
class Production:
    dsn: str
    cluster_url: str
    stack: Stack
    key: str
    policy: Policy


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, redis_cluster: LocalRedisCluster
) -> Iterator[Production]:
    schema = f"e2e_cluster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(BASE_DSN, options=f"-c search_path={schema}")

    async def seed() -> tuple[str, Policy]:
        await migrate(dsn)
        pool = await open_pool(dsn)
        try:
            app = await ApplicationRepository(pool).create(org_id=f"org-{RUN}", name="shop")
            created = await ApiKeyRepository(pool).create(app_id=app.id, environment="production")
            await ModelRepository(pool).create(
                name="gpt-4o-mini",
                provider="openai",
                upstream_model="gpt-4o-mini",
                upstream_cluster="upstream",
                input_price_per_mtok=Decimal("0.15"),
                output_price_per_mtok=Decimal("0.60"),
            )
            policy = await PolicyRepository(pool).create(
                name="two a minute",
                type="rate_limit",
                app_id=app.id,
                config={"requests": 2, "window": "1m", "key": "app"},
            )
            return created.secret, policy
        finally:
            await pool.close()

    key, policy = asyncio.run(seed())
    register_secret(key)
    stack = start_stack(
        tmp_path_factory.mktemp("cluster-production"),
        None,
        workers=2,
        sidecar_env={
            "POLICY_SIDECAR_DATABASE_URL": dsn,
            "POLICY_SIDECAR_REDIS_URL": redis_cluster.url,
            "POLICY_SIDECAR_POLICY_CACHE_SECONDS": str(CACHE_SECONDS),
            "POLICY_SIDECAR_IDENTITY_CACHE_SECONDS": str(CACHE_SECONDS),
        },
    )
    try:
        yield Production(dsn, redis_cluster.url, stack, key, policy)
    finally:
        stack.stop()
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def _raise_limit(env: Production, requests: int) -> None:
    """Edit the policy as the admin service does: commit, then publish on the cluster."""
    pool = await open_pool(env.dsn)
    redis = open_redis(env.cluster_url)
    publisher = RedisPolicyChangePublisher(redis)
    try:
        await PolicyRepository(pool, publisher).update(
            env.policy.id,
            version=env.policy.version,
            config={"requests": requests, "window": "1m", "key": "app"},
        )
    finally:
        await publisher.close()
        await redis.aclose()
        await pool.close()


@pytest.mark.postgres
def test_production_mode_counts_on_the_cluster_and_hears_its_invalidations(
    production: Production,
) -> None:
    assert [
        chat(production.stack, production.key).headers["x-ratelimit-remaining-requests"]
        for _ in range(2)
    ] == ["1", "0"]
    with pytest.raises(openai.RateLimitError) as info:
        chat(production.stack, production.key)
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    # Raised to 5 through the admin path: the change is published on the cluster and
    # the workers drop their cached policies (their caches would last 10 minutes).
    asyncio.run(_raise_limit(production, 5))
    deadline = time.monotonic() + PROPAGATION
    while True:
        try:
            raw = chat(production.stack, production.key)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the raised limit never applied"
            time.sleep(0.1)
    # The same counter carried on: 2 counted before, this one is the third of 5.
    assert raw.headers["x-ratelimit-limit-requests"] == "5"
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
