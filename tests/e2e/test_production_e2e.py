"""Production mode end to end: Postgres + Redis, two sidecar worker processes, Envoy.

Applications, keys, models and policies are written with the repositories (as the
admin service does); usage rows and rollups are read back from Postgres; changes are
published on Redis and must apply on every worker within a second, without a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import openai
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from redis.asyncio import Redis

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.fakeprovider.app import FakeProvider
from policy_sidecar.providers import Usage, default_registry
from policy_sidecar.store.listener import CHANNEL
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationRepository,
    ModelRepository,
    PolicyRepository,
    UsageQueries,
    migrate,
    open_pool,
)
from policy_sidecar.store.postgres.usage_queries import UsageFilter
from policy_sidecar.tokens import load_estimator
from tests.e2e.conftest import at_once
from tests.log_secrets import register as register_secret

from . import edge_checks

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Propagation is polled for up to PROPAGATION seconds (generous: a loaded CI machine),
# and the sidecar's caches live longer than that.
PROPAGATION = 30.0
CACHE_SECONDS = 600
MESSAGES = [{"role": "user", "content": "Name three prime numbers, briefly."}]
MODELS = {
    "gpt-4o-mini": ("openai", Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": ("openai", Decimal("2.50"), Decimal("10.00")),
    "claude-3-5-haiku-latest": ("anthropic", Decimal("0.80"), Decimal("4.00")),
    "command-r-plus": ("cohere", Decimal("2.50"), Decimal("10.00")),
    "gemini-2.0-flash": ("gemini", Decimal("0.10"), Decimal("0.40")),
    "my-deployment": ("azure", Decimal("2.50"), Decimal("10.00")),
}


@dataclass
class Env:
    dsn: str
    stack: Stack
    key: str
    key_id: str
    app_id: str
    org_id: str


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    org = f"org-{uuid.uuid4().hex[:8]}"

    async def seed() -> tuple[str, str, str]:
        await migrate(dsn)
        pool = await open_pool(dsn)
        try:
            app = await ApplicationRepository(pool).create(org_id=org, name="shop")
            created = await ApiKeyRepository(pool).create(app_id=app.id, environment="production")
            for name, (provider, price_in, price_out) in MODELS.items():
                await ModelRepository(pool).create(
                    name=name,
                    provider=provider,
                    upstream_model=name,
                    upstream_cluster="upstream",  # the Envoy cluster of the fake provider
                    input_price_per_mtok=price_in,
                    output_price_per_mtok=price_out,
                )
            await PolicyRepository(pool).create(
                name="no gpt-4o",
                type="model_allowlist",
                app_id=app.id,
                config={"models": [m for m in MODELS if m != "gpt-4o"]},
            )
            return app.id, created.secret, created.key.id
        finally:
            await pool.close()

    app_id, secret, key_id = run(seed())
    register_secret(secret)
    workdir = tmp_path_factory.mktemp("production")
    stack = start_stack(
        workdir,
        None,
        workers=2,
        sidecar_env={
            "POLICY_SIDECAR_DATABASE_URL": dsn,
            "POLICY_SIDECAR_REDIS_URL": REDIS_URL,
            # Caches outlive every poll below: a change seen within the deadline came
            # from the invalidation, never from an entry expiring.
            "POLICY_SIDECAR_POLICY_CACHE_SECONDS": str(CACHE_SECONDS),
            "POLICY_SIDECAR_IDENTITY_CACHE_SECONDS": str(CACHE_SECONDS),
        },
    )
    try:
        yield Env(dsn, stack, secret, key_id, app_id, org)
    finally:
        stack.stop()
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    estimator = load_estimator()
    yield FakeProvider(estimator)
    estimator.close()


def rows(env: Env, ids: set[str], *, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        with psycopg.connect(env.dsn, row_factory=dict_row) as conn:
            found = {
                r["request_id"]: r
                for r in conn.execute(
                    "SELECT * FROM usage_metrics WHERE request_id = ANY(%s)", (list(ids),)
                ).fetchall()
            }
        if len(found) == len(ids):
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {len(ids)} usage rows, found {sorted(found)}")


def expected(fake: FakeProvider, path: str, body: dict[str, Any]) -> Usage:
    matched = default_registry().match("POST", path)
    assert matched is not None
    return fake.usage_for(matched[1], body, 0)


def post(env: Env, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        env.stack.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_usage_rows_and_rollups_match_what_every_provider_reported(
    env: Env, fake: FakeProvider
) -> None:
    run_id = uuid.uuid4().hex[:6]
    cases: dict[str, tuple[str, dict[str, Any], str, bool]] = {}
    oai = openai.OpenAI(base_url=f"{env.stack.url}/v1", api_key=env.key, max_retries=0)
    claude = anthropic.Anthropic(base_url=env.stack.url, api_key=env.key, max_retries=0)
    azure = openai.AzureOpenAI(
        azure_endpoint=env.stack.url, api_key=env.key, api_version="2024-10-21", max_retries=0
    )
    for stream in (False, True):
        tag = f"{run_id}-{int(stream)}"
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 9}
        result = oai.chat.completions.create(
            **body, stream=stream, extra_headers={"x-request-id": f"oai-{tag}"}
        )
        if stream:
            list(result)  # type: ignore[arg-type]
        cases[f"oai-{tag}"] = ("/v1/chat/completions", body, "openai", stream)

        body = {"model": "claude-3-5-haiku-latest", "max_tokens": 11, "messages": MESSAGES}
        if stream:
            with claude.messages.stream(
                **body, extra_headers={"x-request-id": f"ant-{tag}"}
            ) as events:
                events.get_final_message()
        else:
            claude.messages.create(**body, extra_headers={"x-request-id": f"ant-{tag}"})
        cases[f"ant-{tag}"] = ("/v1/messages", body, "anthropic", stream)

        body = {"messages": MESSAGES, "max_tokens": 7}
        result = azure.chat.completions.create(
            model="my-deployment",
            **body,
            stream=stream,
            extra_headers={"x-request-id": f"az-{tag}"},
        )
        if stream:
            list(result)  # type: ignore[arg-type]
        path = "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
        cases[f"az-{tag}"] = (path, body, "azure", stream)

        body = {"model": "command-r-plus", "messages": MESSAGES, "max_tokens": 6, "stream": stream}
        assert (
            post(
                env,
                "/v2/chat",
                body,
                {"authorization": f"Bearer {env.key}", "x-request-id": f"co-{tag}"},
            )
            == 200
        )
        cases[f"co-{tag}"] = ("/v2/chat", body, "cohere", stream)

        body = {
            "contents": [{"role": "user", "parts": [{"text": "Explain AI briefly"}]}],
            "generationConfig": {"maxOutputTokens": 8},
        }
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path = f"/v1beta/models/gemini-2.0-flash:{method}"
        assert (
            post(env, path, body, {"x-goog-api-key": env.key, "x-request-id": f"gem-{tag}"}) == 200
        )
        cases[f"gem-{tag}"] = (path, body, "gemini", stream)

    denied = f"deny-{run_id}"
    with pytest.raises(openai.PermissionDeniedError):
        oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"x-request-id": denied}
        )  # type: ignore[arg-type]

    found = rows(env, set(cases) | {denied})
    for rid, (path, body, provider, stream) in cases.items():
        row = found[rid]
        want = expected(fake, path, body)
        got = (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"])
        assert got == (want.prompt_tokens, want.completion_tokens, want.total_tokens), rid
        assert (row["provider"], row["streamed"], row["decision"], row["status_code"]) == (
            provider,
            stream,
            "allow",
            200,
        ), rid
        assert row["app_id"] == env.app_id
        assert row["api_key_id"] == env.key_id
        assert row["usage_reported"] is True
        # Every metered route here bills tokens: the row says so, with the billed total.
        assert (row["unit"], float(row["quantity"])) == ("tokens", row["total_tokens"]), rid
    # Cost from the deployment's prices per million tokens (gpt-4o-mini: 0.15 in, 0.60 out).
    oai_row = found[f"oai-{run_id}-0"]
    want_cost = (oai_row["prompt_tokens"] * 0.15 + oai_row["completion_tokens"] * 0.60) / 1e6
    assert float(oai_row["cost_usd"]) == pytest.approx(want_cost, rel=1e-6)
    # Stamped with the price book version it was priced with (the model's current one).
    with psycopg.connect(env.dsn) as conn:
        current = conn.execute(
            "SELECT price_version FROM models WHERE name = 'gpt-4o-mini'"
        ).fetchone()
    assert current is not None and oai_row["price_version"] == current[0] is not None
    row = found[denied]
    assert (row["decision"], row["status_code"], row["requested_model"]) == ("deny", 403, "gpt-4o")
    assert row["denied_by"] is not None
    assert (row["unit"], float(row["quantity"])) == ("tokens", 0.0)

    async def totals() -> Any:
        pool = await open_pool(env.dsn)
        try:
            now = datetime.now(UTC)
            return await UsageQueries(pool).totals(
                start=now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1),
                end=now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
                where=UsageFilter(org_id=env.org_id),
            )
        finally:
            await pool.close()

    with psycopg.connect(env.dsn, row_factory=dict_row) as conn:
        raw = conn.execute(
            "SELECT count(*) AS n, sum(total_tokens) AS tokens,"
            " count(*) FILTER (WHERE decision = 'deny') AS denied"
            " FROM usage_metrics WHERE org_id = %s",
            (env.org_id,),
        ).fetchone()
    rolled = run(totals())
    assert raw is not None
    assert (rolled.requests, rolled.total_tokens, rolled.denied_requests) == (
        raw["n"],
        raw["tokens"],
        raw["denied"],
    )


def publish(kind: str) -> None:
    async def go() -> None:
        redis = Redis.from_url(REDIS_URL)
        try:
            await redis.publish(CHANNEL, json.dumps({"kind": kind}))
        finally:
            await redis.aclose()

    run(go())


def statuses(env: Env, n: int = 8, model: str = "gpt-4o-mini") -> list[int]:
    """The statuses of ``n`` requests sent at once (a burst reaches both workers)."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": 3}
    headers = {"authorization": f"Bearer {env.key}"}
    return at_once(lambda _: post(env, "/v1/chat/completions", body, headers), n)


def test_policy_change_applies_on_every_worker_within_a_second(env: Env) -> None:
    assert statuses(env) == [200] * 8  # warm caches on both workers

    async def tighten() -> str:
        pool = await open_pool(env.dsn)
        try:
            policy = await PolicyRepository(pool).create(
                name="claude only",
                type="model_allowlist",
                app_id=env.app_id,
                config={"models": ["claude-3-5-haiku-latest"]},
            )
            return policy.id
        finally:
            await pool.close()

    policy_id = run(tighten())
    publish("policy")
    deadline = time.monotonic() + PROPAGATION
    # A burst reaches both worker processes: both must drop the cache.
    while statuses(env) != [403] * 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert statuses(env) == [403] * 8

    async def remove() -> None:
        pool = await open_pool(env.dsn)
        try:
            await PolicyRepository(pool).delete(policy_id)
        finally:
            await pool.close()

    run(remove())
    publish("policy")
    deadline = time.monotonic() + PROPAGATION
    while statuses(env) != [200] * 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert statuses(env) == [200] * 8


def test_revoked_key_stops_working_at_once(env: Env) -> None:
    async def new_key() -> tuple[str, str, int]:
        pool = await open_pool(env.dsn)
        try:
            created = await ApiKeyRepository(pool).create(
                app_id=env.app_id, environment="production"
            )
            return created.secret, created.key.id, created.key.version
        finally:
            await pool.close()

    secret, key_id, version = run(new_key())
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert post(env, "/v1/chat/completions", body, {"authorization": f"Bearer {secret}"}) == 200

    async def revoke() -> None:
        pool = await open_pool(env.dsn)
        try:
            await ApiKeyRepository(pool).revoke(key_id, version=version)
        finally:
            await pool.close()

    run(revoke())
    publish("api_key")
    deadline = time.monotonic() + PROPAGATION
    while post(env, "/v1/chat/completions", body, {"authorization": f"Bearer {secret}"}) != 401:
        assert time.monotonic() < deadline, f"revoked key still accepted after {PROPAGATION}s"
        time.sleep(0.02)
    codes = at_once(  # on both workers
        lambda _: post(env, "/v1/chat/completions", body, {"authorization": f"Bearer {secret}"})
    )
    assert codes == [401] * 8


def test_unknown_model_is_refused_with_a_clear_error(env: Env) -> None:
    client = openai.OpenAI(base_url=f"{env.stack.url}/v1", api_key=env.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-99", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_the_edge_holds_in_production_mode(env: Env) -> None:
    # No POLICY_SIDECAR_UNKNOWN_PATHS in this stack's environment: deny is the default.
    edge_checks.check_all(env.stack.url, env.key)


def test_oversized_request_ids_never_stop_usage_recording(env: Env) -> None:
    """Clients choose x-request-id (Envoy preserves it): 8 KB ones must not poison the
    usage table; later requests are recorded, and so are these, under replaced ids."""
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(run_id)
    alphabet = string.ascii_letters + string.digits
    big_ids = ["".join(rng.choices(alphabet, k=8192)) for _ in range(3)]
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 5}
    auth = {"authorization": f"Bearer {env.key}"}
    # Unauthenticated, as a client probing the gateway would send them: denied, recorded.
    for big in big_ids:
        assert post(env, "/v1/chat/completions", body, {"x-request-id": big}) == 401
    normal = {f"after-{run_id}-{i}" for i in range(20)}
    for rid in sorted(normal):
        assert post(env, "/v1/chat/completions", body, {**auth, "x-request-id": rid}) == 200
    assert len(rows(env, normal, timeout=30)) == 20
    clients = [big[:256] for big in big_ids]
    deadline = time.monotonic() + 30
    replaced: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(replaced) < 3:
        with psycopg.connect(env.dsn, row_factory=dict_row) as conn:
            replaced = conn.execute(
                "SELECT * FROM usage_metrics WHERE client_request_id = ANY(%s)", (clients,)
            ).fetchall()
        time.sleep(0.1)
    assert sorted(r["client_request_id"] for r in replaced) == sorted(clients)
    for row in replaced:
        assert uuid.UUID(row["request_id"])  # a replacement, not the client's 8 KB
        assert row["usage_flags"] == ["request_id_replaced"]
        assert (row["decision"], row["status_code"]) == ("deny", 401)
