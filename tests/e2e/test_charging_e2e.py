"""Pricing and charging in live traffic: real Envoy, two sidecar workers, Postgres, Redis.

Prices come from the live model catalogue (a change applies from the next request, a
model created after start-up is priced), a CEL post-check sees the real cost, and a
stream the client cuts short is charged what it delivered — in the usage row and in
the token counter.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from redis.asyncio import Redis

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.fakeprovider.app import CHUNK_DELAY_HEADER
from policy_sidecar.store.listener import CHANNEL
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationRepository,
    ModelRepository,
    PolicyRepository,
    migrate,
    open_pool,
)
from policy_sidecar.store.records import Model
from tests.e2e.conftest import at_once

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MESSAGES: Any = [{"role": "user", "content": "Name three prime numbers, briefly."}]
COMPLETION_LIMIT = 100_000


@dataclass
class Env:
    dsn: str
    stack: Stack
    key: str
    cel_policy_id: str


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def create_model(dsn: str, name: str, price_in: str, price_out: str) -> Model:
    pool = await open_pool(dsn)
    try:
        return await ModelRepository(pool).create(
            name=name,
            provider="openai",
            upstream_model="gpt-4o-mini",
            upstream_cluster="upstream",  # the Envoy cluster of the fake provider
            input_price_per_mtok=Decimal(price_in),
            output_price_per_mtok=Decimal(price_out),
        )
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    org = f"org-{uuid.uuid4().hex[:8]}"  # fresh Redis counters for every run

    async def seed() -> tuple[str, str]:
        await migrate(dsn)
        for name, price_in, price_out in (
            ("live", "1.00", "2.00"),
            ("cheap", "0.01", "0.01"),
            ("dear", "100.00", "100.00"),
            ("cut", "3.00", "6.00"),
        ):
            await create_model(dsn, name, price_in, price_out)
        pool = await open_pool(dsn)
        try:
            app = await ApplicationRepository(pool).create(org_id=org, name="shop")
            created = await ApiKeyRepository(pool).create(app_id=app.id, environment="production")
            policies = PolicyRepository(pool)
            cel = await policies.create(
                name="cheap answers only",
                type="custom_cel",
                app_id=app.id,
                config={"post_check_expression": "cost_usd < 0.0001"},
            )
            await policies.create(
                name="completion budget",
                type="token_limit",
                app_id=app.id,
                model_pattern="cut",
                config={
                    "limit": COMPLETION_LIMIT,
                    "window": "1d",
                    "count": "completion",
                    "output_reserve_ratio": 1.0,
                },
            )
            return created.secret, cel.id
        finally:
            await pool.close()

    secret, cel_id = run(seed())
    stack = start_stack(
        tmp_path_factory.mktemp("charging"),
        None,
        workers=2,
        sidecar_env={"POLICY_SIDECAR_DATABASE_URL": dsn, "POLICY_SIDECAR_REDIS_URL": REDIS_URL},
    )
    try:
        yield Env(dsn, stack, secret, cel_id)
    finally:
        stack.stop()
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def client(env: Env) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{env.stack.url}/v1", api_key=env.key, max_retries=0)


def chat(env: Env, model: str, rid: str, **extra: Any) -> Any:
    return client(env).chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,
        max_tokens=extra.pop("max_tokens", 7),
        extra_headers={"x-request-id": rid},
        **extra,
    )


def row(env: Env, rid: str, *, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(env.dsn, row_factory=dict_row) as conn:
            found = conn.execute(
                "SELECT * FROM usage_metrics WHERE request_id = %s", (rid,)
            ).fetchone()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no usage row for {rid}")


def publish_model_change() -> None:
    async def go() -> None:
        redis = Redis.from_url(REDIS_URL)
        try:
            await redis.publish(CHANNEL, json.dumps({"kind": "model"}))
        finally:
            await redis.aclose()

    run(go())


def cost_at(r: dict[str, Any], price_in: float, price_out: float) -> float:
    return float(r["prompt_tokens"] * price_in + r["completion_tokens"] * price_out) / 1e6


def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_price_change_applies_from_the_next_request(env: Env) -> None:
    tag = uuid.uuid4().hex[:6]
    # Both workers have priced "live" at its first price (a burst reaches both).
    at_once(lambda i: chat(env, "live", f"old-{tag}-{i}"))
    for i in range(8):
        r = row(env, f"old-{tag}-{i}")
        assert float(r["cost_usd"]) == pytest.approx(cost_at(r, 1.0, 2.0), rel=1e-6)

    async def reprice() -> None:
        pool = await open_pool(env.dsn)
        try:
            models = ModelRepository(pool)
            model = await models.get_by_name("live")
            await models.update(
                model.id,
                version=model.version,
                input_price_per_mtok=Decimal("10.00"),
                output_price_per_mtok=Decimal("20.00"),
            )
        finally:
            await pool.close()

    run(reprice())
    publish_model_change()
    n = iter(range(1000))

    def repriced() -> bool:
        rid = f"probe-{tag}-{next(n)}"
        chat(env, "live", rid)
        r = row(env, rid)
        return bool(float(r["cost_usd"]) == pytest.approx(cost_at(r, 10.0, 20.0), rel=1e-6))

    until(repriced, "the new price was not applied within 5s")
    at_once(lambda i: chat(env, "live", f"new-{tag}-{i}"))  # every worker
    for i in range(8):  # every following request
        r = row(env, f"new-{tag}-{i}")
        assert float(r["cost_usd"]) == pytest.approx(cost_at(r, 10.0, 20.0), rel=1e-6)


def test_a_model_created_after_start_up_is_priced(env: Env) -> None:
    name = f"late-{uuid.uuid4().hex[:6]}"
    run(create_model(env.dsn, name, "4.00", "8.00"))
    publish_model_change()
    n = iter(range(1000))

    def served() -> bool:
        try:
            chat(env, name, f"{name}-warm-{next(n)}")
        except openai.NotFoundError:  # not in this worker's catalogue yet
            return False
        return True

    until(served, "the new model was not served within 5s")
    at_once(lambda i: chat(env, name, f"{name}-{i}"))  # every worker
    for i in range(8):
        r = row(env, f"{name}-{i}")
        assert r["cost_usd"] is not None
        assert float(r["cost_usd"]) == pytest.approx(cost_at(r, 4.0, 8.0), rel=1e-6)


def test_a_cel_post_check_sees_the_real_cost(env: Env) -> None:
    tag = uuid.uuid4().hex[:6]
    chat(env, "cheap", f"cheap-{tag}", max_tokens=20)
    chat(env, "dear", f"dear-{tag}", max_tokens=20)
    cheap, dear = row(env, f"cheap-{tag}"), row(env, f"dear-{tag}")
    # "dear" costs more than 0.0001 USD: the post-check flags it; "cheap" passes.
    assert float(dear["cost_usd"]) > 0.0001 > float(cheap["cost_usd"]) > 0
    assert dear["post_violations"] == [env.cel_policy_id]
    assert cheap["post_violations"] == []


def remaining_completion_tokens(env: Env, rid: str) -> int:
    raw = chat(env, "cut", rid, max_tokens=1)
    return int(raw.headers["x-ratelimit-remaining-tokens"])


def test_a_stream_the_client_cuts_short_is_charged_what_it_delivered(env: Env) -> None:
    tag = uuid.uuid4().hex[:6]
    rid, read = f"cut-{tag}", 40
    stream = client(env).chat.completions.create(
        model="cut",
        messages=MESSAGES,
        max_tokens=80,  # the fake sends 80 chunks, one word each, 50 ms apart
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": rid, CHUNK_DELAY_HEADER: "0.05"},
    )
    words = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words += 1
        if words == read:
            break
    stream.close()
    r = row(env, rid)
    assert (r["decision"], r["status_code"], r["streamed"]) == ("incomplete", 200, True)
    assert r["usage_reported"] is False  # the token counts are the sidecar's estimate
    assert r["prompt_tokens"] == r["estimated_tokens"] > 0
    # The client read 40 one-token words; the sidecar may have seen a few more in flight.
    assert read <= r["completion_tokens"] < 80
    assert r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"]
    assert float(r["cost_usd"]) == pytest.approx(cost_at(r, 3.0, 6.0), rel=1e-6)
    # The completion counter settled to what was delivered (not refunded to 0): the
    # probe's own reservation is 1 token (max_tokens=1, reserve ratio 1.0).
    remaining = remaining_completion_tokens(env, f"probe-{tag}")
    assert COMPLETION_LIMIT - remaining - 1 == r["completion_tokens"]
