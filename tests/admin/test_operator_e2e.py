"""The operator's story end to end, with real processes only: `policy-sidecar admin`
driven by the grpcurl binary; Envoy and the production sidecar (Postgres + Redis)
serving an OpenAI client. Admin writes must reach the running sidecar through the
Redis invalidation the admin service publishes, without a restart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.store.postgres import migrate
from tests.log_secrets import register as register_secret

from .helpers import grpcurl_binary

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Changes are polled for up to PROPAGATION seconds (generous: a loaded CI machine); the
# sidecar's caches live longer than that.
PROPAGATION = 30.0
CACHE_SECONDS = 600
TOKEN = "operator-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Say hi."}]
DOCS = ROOT / "docs" / "admin.md"


def walkthrough_model() -> dict[str, Any]:
    """The CreateModel request of docs/admin.md's walkthrough, as written there."""
    found = re.search(
        r"g -d '(\{\"model\": .*?\})' \\\n\s+"
        r"\$ADMIN policy_sidecar\.admin\.v1\.ModelService/CreateModel",
        DOCS.read_text(),
        re.DOTALL,
    )
    assert found, "docs/admin.md: no CreateModel step"
    model: dict[str, Any] = json.loads(found.group(1))
    return model


def walkthrough_request() -> dict[str, Any]:
    """The request the walkthrough sends through Envoy after creating the model."""
    found = re.search(r"^curl .*?-d '(\{.*?\})'$", DOCS.read_text(), re.DOTALL | re.MULTILINE)
    assert found, "docs/admin.md: no traffic step"
    request: dict[str, Any] = json.loads(found.group(1))
    return request


@dataclass(frozen=True)
class Env:
    admin: str
    stack: Stack


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    import asyncio

    schema = f"op_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    asyncio.run(migrate(dsn))
    workdir = tmp_path_factory.mktemp("operator")
    stores = {
        "POLICY_SIDECAR_DATABASE_URL": dsn,
        "POLICY_SIDECAR_REDIS_URL": REDIS_URL,
        # Caches outlive every poll: a change seen in time came from the invalidation.
        "POLICY_SIDECAR_POLICY_CACHE_SECONDS": str(CACHE_SECONDS),
        "POLICY_SIDECAR_IDENTITY_CACHE_SECONDS": str(CACHE_SECONDS),
    }
    log = open(workdir / "admin.log", "w+b")  # noqa: SIM115 - closed below
    admin = subprocess.Popen(
        [sys.executable, "-m", "policy_sidecar.cli.main", "admin", "--port", "0"],
        env={
            **os.environ,
            **stores,
            "PYTHONPATH": str(ROOT),
            "POLICY_SIDECAR_ADMIN_TOKENS": f"ops:admin:{TOKEN}",
            "POLICY_SIDECAR_ADMIN_METRICS_PORT": "-1",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack = None
    try:
        address = _wait_for_address(workdir / "admin.log", admin)
        stack = start_stack(workdir, None, workers=1, sidecar_env=stores)
        yield Env(address, stack)
    finally:
        if stack is not None:
            stack.stop()
        admin.terminate()
        admin.wait(timeout=15)
        log.close()
        with psycopg.connect(BASE_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _wait_for_address(log: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"listening on ([\d.]+:\d+)", log.read_text(errors="replace"))
        if match:
            return match.group(1)
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"admin did not start: {log.read_text(errors='replace')}")


def grpcurl(env: Env, method: str, body: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [grpcurl_binary(), "-plaintext", "-H", f"authorization: Bearer {TOKEN}",
         "-d", json.dumps(body), env.admin, f"policy_sidecar.admin.v1.{method}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def chat(env: Env, key: str, model: str) -> int:
    client = openai.OpenAI(base_url=f"{env.stack.url}/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def post(env: Env, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{env.stack.url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def create_model(env: Env, name: str, *, cluster: str) -> None:
    grpcurl(
        env,
        "ModelService/CreateModel",
        {
            "model": {
                "name": name,
                "provider": "openai",
                "upstream_model": name,
                "upstream_cluster": cluster,
                "input_price_per_mtok": "1",
                "output_price_per_mtok": "2",
                "enabled": True,
            }
        },
    )


def eventually(check: Callable[[], bool], what: str, timeout: float = PROPAGATION) -> None:
    """Polls `check`: the change must reach the running sidecar within `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not seen within {timeout}s"
        time.sleep(0.1)


def test_operator_story(env: Env) -> None:
    sent: list[int] = []

    def send(key: str, model: str) -> int:
        sent.append(chat(env, key, model))
        return sent[-1]

    app = grpcurl(
        env,
        "ApplicationService/CreateApplication",
        {"application": {"org_id": "acme", "name": "support-bot"}},
    )["application"]
    created = grpcurl(
        env,
        "ApiKeyService/CreateApiKey",
        {"app_id": app["id"], "environment": "production", "name": "prod"},
    )
    key = created["secret"]
    register_secret(key)
    # The walkthrough's model, exactly as docs/admin.md creates it, serves its request.
    model = grpcurl(env, "ModelService/CreateModel", walkthrough_model())["model"]
    status, _ = post(env, key, walkthrough_request())
    sent.append(status)
    assert status == 200 and walkthrough_request()["model"] == model["name"]
    create_model(env, "gpt-4o", cluster="upstream")
    assert send(key, "gpt-4o") == 200

    # A policy created through the admin API applies to the running sidecar.
    policy = grpcurl(
        env,
        "PolicyService/CreatePolicy",
        {
            "policy": {
                "name": "mini only",
                "type": "model_allowlist",
                "app_id": app["id"],
                "config": {"models": ["gpt-4o-mini"]},
            }
        },
    )["policy"]
    eventually(lambda: send(key, "gpt-4o") == 403, "new policy")
    assert send(key, "gpt-4o-mini") == 200

    # Switching it to shadow mode lets the traffic through again.
    grpcurl(
        env,
        "PolicyService/UpdatePolicy",
        {
            "policy": {
                "id": policy["id"],
                "version": policy["version"],
                "mode": "POLICY_MODE_SHADOW",
            },
            "update_mask": {"paths": ["mode"]},
        },
    )
    eventually(lambda: send(key, "gpt-4o") == 200, "policy in shadow mode")

    # Usage of this traffic, read back as an operator.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = {
        "start_time": (hour - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": (hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "filter": {"app_id": app["id"]},
    }

    def usage() -> dict[str, Any]:
        return grpcurl(env, "UsageService/GetUsageSummary", window)["totals"]

    eventually(lambda: int(usage().get("requests", "0")) == len(sent), "usage")
    totals = usage()
    assert int(totals["deniedRequests"]) == sent.count(403)
    assert int(totals["totalTokens"]) > 0
    denials = grpcurl(env, "UsageService/ListDenialsByPolicy", window)["denials"]
    assert denials[0]["policyId"] == policy["id"]

    # Revoking the key stops it at once.
    grpcurl(
        env,
        "ApiKeyService/RevokeApiKey",
        {"id": created["apiKey"]["id"], "version": created["apiKey"]["version"]},
    )
    eventually(lambda: chat(env, key, "gpt-4o-mini") == 401, "revoked key")


def test_a_model_on_a_cluster_envoy_lacks_is_a_recorded_error(env: Env) -> None:
    # "openai" is no cluster of the rendered configuration (the walkthrough once used it).
    app = grpcurl(
        env,
        "ApplicationService/CreateApplication",
        {"application": {"org_id": "acme", "name": "misrouted"}},
    )["application"]
    key = grpcurl(
        env,
        "ApiKeyService/CreateApiKey",
        {"app_id": app["id"], "environment": "production", "name": "prod"},
    )["secret"]
    create_model(env, "misrouted-model", cluster="openai")
    body = {"model": "misrouted-model", "messages": MESSAGES}
    replies: list[tuple[int, dict[str, Any]]] = []
    # The new model reaches the running sidecar through Redis; until then it is unrouted.
    eventually(lambda: replies.append(post(env, key, body)) or replies[-1][0] != 200, "model")
    status, error = replies[-1]
    assert status == 503, error
    assert error["error"]["code"] == "upstream_not_configured"

    def errors() -> list[dict[str, Any]]:
        rows = grpcurl(env, "UsageService/ListRecentRequests", {"page_size": 50})
        mine = [r for r in rows.get("requests", []) if r.get("appId") == app["id"]]
        assert all(r["statusCode"] == 200 for r in mine if r["decision"] == "allow"), mine
        return [r for r in mine if r["statusCode"] == 503]

    eventually(lambda: len(errors()) == 1, "usage record")
    [row] = errors()
    assert (row["decision"], row["deniedBy"]) == ("error", "upstream_not_configured")
