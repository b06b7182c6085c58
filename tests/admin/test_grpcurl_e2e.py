"""The admin service driven as an operator would: `policy-sidecar admin` as its own
process, the real grpcurl binary, server reflection, bearer tokens.

Usage is written here with the store's own batch insert (as the sidecar's recorder
does) and read back through grpcurl; test_operator_e2e.py sends real traffic
through Envoy and the production sidecar instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policy_sidecar.store.postgres import Pool, UsageRepository
from policy_sidecar.usage.record import UsageRecord

from .helpers import grpcurl_binary

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ADMIN = "e2e-admin-token-0123456789"
VIEWER = "e2e-viewer-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def admin_address(dsn: str, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POLICY_SIDECAR_DATABASE_URL": dsn,
        "POLICY_SIDECAR_ADMIN_TOKENS": f"ops:admin:{ADMIN},viewer:readonly:{VIEWER}",
        "POLICY_SIDECAR_ADMIN_PORT": "0",
        "POLICY_SIDECAR_ADMIN_METRICS_PORT": "0",
    }
    env.pop("POLICY_SIDECAR_REDIS_URL", None)
    # The log stays in a file: the session's log check (tests/log_secrets.py) reads it.
    log_path = tmp_path / "admin.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "policy_sidecar.cli.main", "admin",
            env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        seen = ""
        while True:
            match = re.search(r"listening on ([\d.]+:\d+)", seen)
            metrics = re.search(r"metrics on :(\d+)/metrics", seen)
            if match and metrics:
                break
            assert proc.returncode is None, f"admin exited before listening: {seen}"
            assert time.monotonic() < deadline, f"admin did not listen: {seen}"
            await asyncio.sleep(0.05)
            seen = log_path.read_text(errors="replace")
        yield match.group(1), int(metrics.group(1))
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0


class Grpcurl:
    def __init__(self, address: str) -> None:
        self.address = address
        self.binary = grpcurl_binary()

    async def run(self, *args: str, token: str | None = ADMIN) -> tuple[int, str]:
        auth = ("-H", f"authorization: Bearer {token}") if token else ()
        proc = await asyncio.create_subprocess_exec(
            self.binary, "-plaintext", *auth, self.address, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        return proc.returncode or 0, out.decode()

    async def call(
        self, method: str, body: dict[str, Any] | None = None, *, token: str | None = ADMIN
    ) -> dict[str, Any]:
        data = ("-d", json.dumps(body)) if body is not None else ()
        code, out = await self.rpc(method, *data, token=token)
        assert code == 0, out
        result: dict[str, Any] = json.loads(out)
        return result

    async def rpc(self, method: str, *args: str, token: str | None = ADMIN) -> tuple[int, str]:
        auth = ("-H", f"authorization: Bearer {token}") if token else ()
        proc = await asyncio.create_subprocess_exec(
            self.binary, "-plaintext", *auth, *args, self.address,
            f"policy_sidecar.admin.v1.{method}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        return proc.returncode or 0, out.decode()


async def test_operator_walkthrough(admin_address: tuple[str, int], pool: Pool) -> None:
    address, metrics_port = admin_address
    g = Grpcurl(address)
    code, services = await g.run("list")
    assert code == 0 and "policy_sidecar.admin.v1.PolicyService" in services
    code, described = await g.run("describe", "policy_sidecar.admin.v1.PolicyService")
    assert code == 0 and "rpc TestPolicy" in described

    app = (
        await g.call(
            "ApplicationService/CreateApplication",
            {"application": {"org_id": "acme", "name": "support-bot"}},
        )
    )["application"]
    key = await g.call(
        "ApiKeyService/CreateApiKey",
        {"app_id": app["id"], "environment": "production", "name": "prod"},
    )
    assert key["secret"].startswith(key["apiKey"]["prefix"])
    listed = await g.call("ApiKeyService/ListApiKeys", {"app_id": app["id"]}, token=VIEWER)
    assert [k["prefix"] for k in listed["apiKeys"]] == [key["apiKey"]["prefix"]]
    assert key["secret"] not in json.dumps(listed)

    model = (
        await g.call(
            "ModelService/CreateModel",
            {
                "model": {
                    "name": "gpt-4o-mini",
                    "provider": "openai",
                    "upstream_model": "gpt-4o-mini",
                    "upstream_cluster": "upstream",
                    "input_price_per_mtok": "0.15",
                    "output_price_per_mtok": "0.60",
                    "enabled": True,
                }
            },
        )
    )["model"]
    assert (await g.call("ModelService/GetModel", {"id": "gpt-4o-mini"}))["model"] == model

    policy = (
        await g.call(
            "PolicyService/CreatePolicy",
            {
                "policy": {
                    "name": "mini only",
                    "type": "model_allowlist",
                    "app_id": app["id"],
                    "config": {"models": ["gpt-4o-mini"]},
                }
            },
        )
    )["policy"]
    tested = await g.call(
        "PolicyService/TestPolicy",
        {
            "policy_id": policy["id"],
            "request": {"model": "gpt-4o", "org_id": "acme", "app_id": app["id"]},
        },
    )
    assert tested["verdict"] == "VERDICT_DENY" and tested["violation"]["httpStatus"] == 403
    policies = await g.call("PolicyService/ListPolicies", {"app_id": app["id"]}, token=VIEWER)
    assert [p["id"] for p in policies["policies"]] == [policy["id"]]

    # Errors an operator sees: field violations, a stale version, a read-only token.
    code, out = await g.rpc(
        "PolicyService/CreatePolicy",
        "-d",
        json.dumps({"policy": {"name": "x", "type": "request_size", "config": {}}}),
    )
    assert code != 0 and "InvalidArgument" in out and "policy.config.max_bytes" in out
    code, out = await g.rpc(
        "ApplicationService/ArchiveApplication",
        "-d",
        json.dumps({"id": app["id"], "version": 7}),
    )
    assert code != 0 and "Aborted" in out
    code, out = await g.rpc("ApplicationService/CreateApplication", "-d", "{}", token=VIEWER)
    assert code != 0 and "PermissionDenied" in out and VIEWER not in out

    # Traffic is recorded by the sidecar's recorder; read it back as an operator.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await UsageRepository(pool).insert_batch(
        [
            UsageRecord(
                request_id=f"e2e-{i}",
                started_at=hour + timedelta(minutes=i),
                decision="allow" if i else "deny",
                status_code=200 if i else 403,
                org_id="acme",
                app_id=app["id"],
                environment="production",
                served_model="gpt-4o-mini",
                total_tokens=100 * i,
                denied_by=None if i else policy["id"],
            )
            for i in range(3)
        ]
    )
    window = {
        "start_time": hour.isoformat().replace("+00:00", "Z"),
        "end_time": (hour + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    }
    summary = await g.call(
        "UsageService/GetUsageSummary", {**window, "filter": {"app_id": app["id"]}}, token=VIEWER
    )
    assert summary["totals"]["requests"] == "3" and summary["totals"]["totalTokens"] == "300"
    denials = await g.call("UsageService/ListDenialsByPolicy", window, token=VIEWER)
    assert denials["denials"] == [{"policyId": policy["id"], "denials": "1"}]
    recent = await g.call("UsageService/ListRecentRequests", {"page_size": 2}, token=VIEWER)
    assert [r["requestId"] for r in recent["requests"]] == ["e2e-2", "e2e-1"]

    # Prometheus metrics of the admin service, on their own port.
    text = await asyncio.to_thread(
        lambda: (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
    )
    assert (
        'policy_sidecar_admin_requests_total{code="INVALID_ARGUMENT",'
        'method="policy_sidecar.admin.v1.PolicyService.CreatePolicy"} 1.0'
    ) in text
    assert 'policy_sidecar_admin_auth_failures_total{reason="permission_denied"} 1.0' in text


async def test_grpcurl_write_is_in_the_audit_log(admin_address: tuple[str, int]) -> None:
    g = Grpcurl(admin_address[0])
    app = (
        await g.call(
            "ApplicationService/CreateApplication",
            {"application": {"org_id": "acme", "name": "audited"}},
        )
    )["application"]
    listed = await g.call(
        "AuditService/ListAuditEvents",
        {"object_type": "application", "object_id": app["id"]},
        token=VIEWER,
    )
    (event,) = listed["events"]
    assert event["actor"] == "ops" and event["action"] == "create"
    assert event["method"].endswith("ApplicationService/CreateApplication")
    assert json.loads(event["afterJson"])["name"] == "audited"
    code, out = await g.rpc(
        "AuditService/ListAuditEvents", "-d", '{"page_token": "bogus"}', token=VIEWER
    )
    assert code != 0 and "InvalidArgument" in out and "page_token" in out


async def test_the_fallback_group_commands_of_the_docs_work(
    admin_address: tuple[str, int],
) -> None:
    """docs/connect-providers.md, "Fallback across accounts": its grpcurl commands, run
    as written (the group's id filled in where the docs say fbg_...)."""
    address, _ = admin_address
    g = Grpcurl(address)
    text = (ROOT / "docs" / "connect-providers.md").read_text()
    section = text[text.index("## Fallback across accounts") :]
    block = section[section.index("```sh") : section.index("```", section.index("```sh") + 5)]
    commands = re.findall(r"g -d '(.*?)'\s*\\?\s*\$ADMIN (\S+)", block, re.DOTALL)
    assert [m.rsplit("/", 1)[1] for _, m in commands] == [
        "CreateAccount",
        "CreateAccount",
        "CreateFallbackGroup",
        "CreateModel",
        "UpdateFallbackGroup",
        "GetFallbackGroup",
    ]
    group_id = ""
    for body, method in commands:
        code, out = await g.rpc(
            method.removeprefix("policy_sidecar.admin.v1."),
            "-d",
            body.replace("fbg_...", group_id),
        )
        assert code == 0, (method, out)
        answer = json.loads(out)
        if method.endswith("CreateFallbackGroup"):
            group_id = answer["fallbackGroup"]["id"]
    assert answer["fallbackGroup"]["accounts"] == ["openai-spare", "openai-prod"]
    assert answer["fallbackGroup"]["version"] == "2"
    # A group over an account of another provider is refused, naming the field.
    await g.call(
        "AccountService/CreateAccount",
        {
            "account": {
                "name": "claude",
                "provider": "anthropic",
                "base_host": "api.anthropic.com",
                "credential_ref": "claude",
            }
        },
    )
    code, out = await g.rpc(
        "FallbackGroupService/CreateFallbackGroup",
        "-d",
        json.dumps({"fallback_group": {"name": "mixed", "accounts": ["openai-prod", "claude"]}}),
    )
    assert code != 0 and "InvalidArgument" in out and "fallback_group.accounts" in out, out
