"""A fallback group created through the admin API reaches Envoy at run time, and the
usage record names the account that answered.

Production mode (Postgres, Redis), real Envoy, TLS fake providers: two accounts and a
group over them are created with the admin API's generated stubs, as an operator's
grpcurl would; the sidecar writes the group into the CDS file Envoy watches (no
restart). The first account answers 429, the second 200: the client gets the second's
answer, each attempt carried its own account's key, and exactly one usage record is
written, with ``upstream_account`` the second account. A model on one account records
that account too.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
import pytest
import trustme
from psycopg.conninfo import make_conninfo
from redis.asyncio import Redis

from policy_sidecar.admin import start_admin_server
from policy_sidecar.admin.auth import parse_tokens
from policy_sidecar.admin.v1 import accounts_pb2 as apb
from policy_sidecar.admin.v1 import accounts_pb2_grpc, models_pb2_grpc, usage_pb2_grpc
from policy_sidecar.admin.v1 import fallback_groups_pb2 as gpb
from policy_sidecar.admin.v1 import fallback_groups_pb2_grpc as ggrpc
from policy_sidecar.admin.v1 import models_pb2 as mpb
from policy_sidecar.admin.v1 import usage_pb2 as upb
from policy_sidecar.cli.launcher import Stack, free_port, new_stack
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationRepository,
    migrate,
    open_pool,
)
from policy_sidecar.store.redis_publisher import RedisPolicyChangePublisher
from tests.admin.helpers import ADMIN_TOKEN, AUTH
from tests.e2e.conftest import KEY, usage_records
from tests.e2e.test_provider_tls_e2e import OPENAI_HOST, Fake, send, write_key
from tests.log_secrets import register as register_secret

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKENS = parse_tokens([f"ops:admin:{ADMIN_TOKEN}"], source="test")
CHAT = {"messages": [{"role": "user", "content": "Say hi."}]}
# account -> what its fake answers
ANSWERS = {"openai-busy": ("--status", "429"), "openai-spare": ()}
T = TypeVar("T")


@dataclass
class Env:
    stack: Stack
    dsn: str
    key: str
    fakes: dict[str, Fake]
    ca_file: Path
    credentials: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("fallback-groups")
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    ca = trustme.CA()
    ca_file = workdir / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert(OPENAI_HOST).private_key_and_cert_chain_pem.write_to_path(
        str(workdir / "cert.pem")
    )
    credentials = workdir / "credentials"
    credentials.mkdir()
    (workdir / "cds").mkdir()
    stack = new_stack(workdir / "stack", workers=2)
    stack.cds_path = workdir / "cds" / "clusters.json"
    try:
        key = asyncio.run(_seed(dsn))
        register_secret(key)
        fakes = {}
        for name, answer in ANSWERS.items():
            port = free_port()
            args = ["--tls-cert", str(workdir / "cert.pem"), *answer]
            stack.start_fake_provider(name, port, args=args, route=False)
            fakes[name] = Fake(port)
            write_key(credentials, name, f"sk-{name}")
            register_secret(f"sk-{name}")
        stack.start_fake_provider()
        stack.start_sidecar(
            None,
            {
                "POLICY_SIDECAR_DATABASE_URL": dsn,
                "POLICY_SIDECAR_REDIS_URL": REDIS_URL,
                "POLICY_SIDECAR_CDS_PATH": str(stack.cds_path),
                "POLICY_SIDECAR_CREDENTIALS_DIR": str(credentials),
            },
        )
        stack.start_envoy()
        yield Env(stack, dsn, key, fakes, ca_file, credentials)
    finally:
        stack.stop()
        with psycopg.connect(BASE_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def _seed(dsn: str) -> str:
    await migrate(dsn)
    pool = await open_pool(dsn)
    try:
        app = await ApplicationRepository(pool).create(org_id="org-fb", name="shop")
        return (await ApiKeyRepository(pool).create(app_id=app.id, environment="prod")).secret
    finally:
        await pool.close()


def admin_call(env: Env, call: Callable[[grpc.aio.Channel], Awaitable[T]]) -> T:
    """Runs ``call`` against an admin server publishing to the sidecars' Redis."""

    async def run() -> T:
        redis = Redis.from_url(REDIS_URL)
        pool = await open_pool(env.dsn)
        publisher = RedisPolicyChangePublisher(redis)
        admin = await start_admin_server(
            pool=pool, tokens=TOKENS, publisher=publisher, credentials_dir=env.credentials
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{admin.port}") as channel:
                return await call(channel)
        finally:
            await admin.server.stop(None)
            await publisher.close()
            await redis.aclose()
            await pool.close()

    return asyncio.run(run())


def _clusters(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.admin_port}/clusters"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def _rows(env: Env, request_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(env.dsn) as conn:
        cur = conn.execute(
            "SELECT decision, status_code, requested_model, upstream_account, cost_usd"
            " FROM usage_metrics WHERE request_id = %s",
            (request_id,),
        )
        return cur.fetchall()


def _send(env: Env, model: str) -> tuple[str, int, bytes]:
    rid = str(uuid.uuid4())
    status, _, body = send(
        env.stack,
        "/v1/chat/completions",
        {**CHAT, "model": model},
        request_id=rid,
        extra={"authorization": f"Bearer {env.key}"},
    )
    return rid, status, body


def test_a_group_created_through_the_admin_api_falls_back_and_records_the_answering_account(
    env: Env,
) -> None:
    envoy_pid = env.stack.processes["envoy"].popen.pid

    async def create(channel: grpc.aio.Channel) -> None:
        accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        for name, fake in env.fakes.items():
            account = apb.Account(
                name=name,
                provider="openai",
                base_host=OPENAI_HOST,
                port=fake.port,
                address="127.0.0.1",
                credential_ref=name,
                ca_file=str(env.ca_file),
                enabled=True,
            )
            await accounts.CreateAccount(apb.CreateAccountRequest(account=account), metadata=AUTH)
        group = gpb.FallbackGroup(name="openai-any", accounts=["openai-busy", "openai-spare"])
        await ggrpc.FallbackGroupServiceStub(channel).CreateFallbackGroup(
            gpb.CreateFallbackGroupRequest(fallback_group=group), metadata=AUTH
        )
        models = models_pb2_grpc.ModelServiceStub(channel)
        for model in (
            # Routed to the group; and one on a single account.
            mpb.Model(name="any-mini", upstream_cluster="openai-any"),
            mpb.Model(name="spare-mini", account="openai-spare"),
        ):
            model.provider, model.upstream_model, model.enabled = "openai", "gpt-4o-mini", True
            model.input_price_per_mtok, model.output_price_per_mtok = "0.15", "0.6"
            await models.CreateModel(mpb.CreateModelRequest(model=model), metadata=AUTH)

    admin_call(env, create)
    _until(lambda: "openai-any::" in _clusters(env.stack), "Envoy lists the group's cluster")

    rid, status, body = _until(
        lambda: (r := _send(env, "any-mini"))[1] == 200 and r, "the group's model answers"
    )
    assert env.stack.processes["envoy"].popen.pid == envoy_pid  # no restart
    (refused,) = env.fakes["openai-busy"].by_request_id(rid)
    (answered,) = env.fakes["openai-spare"].by_request_id(rid)
    assert refused["headers"]["authorization"] == "Bearer sk-openai-busy"
    assert answered["headers"]["authorization"] == "Bearer sk-openai-spare"
    for attempt in (refused, answered):
        assert all(env.key not in v for v in attempt["headers"].values())
        assert not [h for h in attempt["headers"] if h.startswith("x-policy-sidecar-")]
    # Recorded and charged once, with the account that answered.
    rows = _until(lambda: _rows(env, rid), "the request's usage record")
    assert len(rows) == 1, rows
    decision, code, model, account, cost = rows[0]
    assert (decision, code, model, account) == ("allow", 200, "any-mini", "openai-spare")
    assert cost is not None and cost > 0

    # A model on one account records that account.
    plain, status, body = _send(env, "spare-mini")
    assert status == 200, body
    (row,) = _until(lambda: _rows(env, plain), "the plain request's usage record")
    assert (row[0], row[3]) == ("allow", "openai-spare")
    # Still one record of the retried request (an attempt's record would be there by now:
    # the later request's is).
    assert len(_rows(env, rid)) == 1
    assert env.fakes["openai-busy"].by_request_id(plain) == []

    # The admin API shows it in the recent requests.
    async def recent(channel: grpc.aio.Channel) -> dict[str, str]:
        found = await usage_pb2_grpc.UsageServiceStub(channel).ListRecentRequests(
            upb.ListRecentRequestsRequest(), metadata=AUTH
        )
        return {r.request_id: r.upstream_account for r in found.requests}

    shown = admin_call(env, recent)
    assert (shown[rid], shown[plain]) == ("openai-spare", "openai-spare")


def test_a_standalone_files_groups_are_written_to_the_cds_file(tmp_path: Path, env: Env) -> None:
    """Standalone mode: the file's fallback groups go into the CDS file the sidecar
    writes at start, beside its accounts (the same fakes as above)."""
    accounts = "\n".join(
        f"  - {{name: {name}, provider: openai, base_host: {OPENAI_HOST}, port: {fake.port},"
        f" address: 127.0.0.1, credential_ref: {name}, ca_file: {env.ca_file}}}"
        for name, fake in env.fakes.items()
    )
    config = tmp_path / "standalone.yaml"
    config.write_text(
        f"""
version: 1
applications:
  - id: sa-app
    org_id: sa-org
    keys: [{{environment: dev, key: {KEY}}}]
accounts:
{accounts}
fallback_groups:
  - {{name: openai-any, accounts: [openai-busy, openai-spare]}}
models:
  - {{name: any-mini, provider: openai, upstream_model: gpt-4o-mini, route: openai-any,
      input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
"""
    )
    (tmp_path / "cds").mkdir()
    stack = new_stack(tmp_path / "stack")
    stack.cds_path = tmp_path / "cds" / "clusters.json"
    try:
        stack.start_fake_provider()
        stack.start_sidecar(
            config,
            {
                "POLICY_SIDECAR_CDS_PATH": str(stack.cds_path),
                "POLICY_SIDECAR_CREDENTIALS_DIR": str(env.credentials),
            },
        )
        stack.start_envoy()
        _until(lambda: "openai-any::" in _clusters(stack), "Envoy lists the group's cluster")
        rid = str(uuid.uuid4())
        status, _, body = send(
            stack, "/v1/chat/completions", {**CHAT, "model": "any-mini"}, request_id=rid
        )
        assert status == 200, body
        (refused,) = env.fakes["openai-busy"].by_request_id(rid)
        (answered,) = env.fakes["openai-spare"].by_request_id(rid)
        assert refused["headers"]["authorization"] == "Bearer sk-openai-busy"
        assert answered["headers"]["authorization"] == "Bearer sk-openai-spare"
        (record,) = usage_records(stack, {rid})
        assert (record["status_code"], record["upstream_account"]) == (200, "openai-spare")
    finally:
        stack.stop()
