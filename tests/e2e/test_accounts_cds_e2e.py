"""Provider accounts reach Envoy at run time: created through the admin API, published,
written by the sidecar to the CDS file Envoy watches; Envoy lists
the cluster without a restart and a request to a model on the account reaches the
provider over TLS with the account's key injected."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import trustme
from psycopg.conninfo import make_conninfo
from redis.asyncio import Redis

from policy_sidecar.admin import start_admin_server
from policy_sidecar.admin.auth import parse_tokens
from policy_sidecar.admin.v1 import accounts_pb2 as apb
from policy_sidecar.admin.v1 import accounts_pb2_grpc, models_pb2_grpc
from policy_sidecar.admin.v1 import models_pb2 as mpb
from policy_sidecar.cli.launcher import Stack, new_stack
from policy_sidecar.envoy.upstreams import secret_file_text
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationRepository,
    migrate,
    open_pool,
)
from policy_sidecar.store.redis_publisher import RedisPolicyChangePublisher
from tests.admin.helpers import ADMIN_TOKEN, AUTH
from tests.log_secrets import register as register_secret

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROVIDER_KEY = "sk-account-key-not-real-0123456789"
HOST = "provider.test"
TOKENS = parse_tokens([f"ops:admin:{ADMIN_TOKEN}"], source="test")


class _Provider(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        reply = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "2, 3, 5"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def tls_provider(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS provider for `provider.test` on 127.0.0.1, and its CA bundle."""
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca_path
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def production_dsn() -> Iterator[str]:
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _clusters(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.admin_port}/clusters"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _post(stack: Stack, key: str, model: str) -> tuple[int, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": "primes?"}]}
    request = urllib.request.Request(
        f"{stack.url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def test_an_account_created_at_run_time_reaches_envoy_and_serves_its_models(
    tmp_path: Path, production_dsn: str, tls_provider: tuple[int, Path]
) -> None:
    tls_port, ca_path = tls_provider
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "acc-key.yaml").write_text(secret_file_text("acc-key", PROVIDER_KEY))
    register_secret(PROVIDER_KEY)

    async def seed() -> str:
        await migrate(production_dsn)
        pool = await open_pool(production_dsn)
        try:
            app = await ApplicationRepository(pool).create(org_id="org-acc", name="shop")
            created = await ApiKeyRepository(pool).create(app_id=app.id, environment="prod")
            return created.secret
        finally:
            await pool.close()

    key = asyncio.run(seed())
    register_secret(key)
    (tmp_path / "cds").mkdir()
    stack = new_stack(tmp_path / "stack", workers=2)
    stack.cds_path = tmp_path / "cds" / "clusters.json"
    try:
        stack.start_fake_provider()
        stack.start_sidecar(
            None,
            {
                "POLICY_SIDECAR_DATABASE_URL": production_dsn,
                "POLICY_SIDECAR_REDIS_URL": REDIS_URL,
                "POLICY_SIDECAR_CDS_PATH": str(stack.cds_path),
                "POLICY_SIDECAR_CREDENTIALS_DIR": str(credentials),
            },
        )
        stack.start_envoy()
        assert "tls-acc::" not in _clusters(stack)
        envoy_pid = stack.processes["envoy"].popen.pid

        async def add_account() -> None:
            # Through the admin API, as an operator would (grpc, production mode).
            redis = Redis.from_url(REDIS_URL)
            pool = await open_pool(production_dsn)
            publisher = RedisPolicyChangePublisher(redis)
            admin = await start_admin_server(
                pool=pool, tokens=TOKENS, publisher=publisher, credentials_dir=credentials
            )
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{admin.port}") as channel:
                    account = apb.Account(
                        name="tls-acc",
                        provider="openai",
                        base_host=HOST,
                        port=tls_port,
                        address="127.0.0.1",
                        credential_ref="acc-key",
                        ca_file=str(ca_path),
                        enabled=True,
                    )
                    await accounts_pb2_grpc.AccountServiceStub(channel).CreateAccount(
                        apb.CreateAccountRequest(account=account), metadata=AUTH
                    )
                    model = mpb.Model(
                        name="acc-model",
                        provider="openai",
                        upstream_model="gpt-4o-mini",
                        account="tls-acc",
                        input_price_per_mtok="0.15",
                        output_price_per_mtok="0.6",
                        enabled=True,
                    )
                    await models_pb2_grpc.ModelServiceStub(channel).CreateModel(
                        mpb.CreateModelRequest(model=model), metadata=AUTH
                    )
            finally:
                await admin.server.stop(None)
                await publisher.close()
                await redis.aclose()
                await pool.close()

        asyncio.run(add_account())
        _until(lambda: "tls-acc::" in _clusters(stack), "Envoy lists the account's cluster")
        _status, body = _until(
            lambda: (r := _post(stack, key, "acc-model"))[0] == 200 and r,
            "a request to the account's model succeeds",
        )
        assert json.loads(body)["choices"][0]["message"]["content"] == "2, 3, 5"
        assert stack.processes["envoy"].popen.pid == envoy_pid  # no restart
        # The account's key replaced the caller's; the caller's key never left Envoy.
        assert _Provider.seen[-1]["authorization"] == f"Bearer {PROVIDER_KEY}"
        assert all(key not in v for h in _Provider.seen for v in h.values())
    finally:
        stack.stop()
