"""Real provider upstreams through the real Envoy, against a TLS fake provider.

The fake provider serves certificates a test CA issued for the providers' real host
names; the account clusters keep those names for SNI, the certificate check and
``host`` but connect to 127.0.0.1 (no hosts-file edit). Envoy injects each account's
key from a watched credentials directory.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.cli.launcher import Stack, free_port, new_stack
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.envoy.upstreams import secret_file_text
from policy_sidecar.fakeprovider.app import RECEIVED_PATH
from tests.e2e.conftest import KEY, usage_records
from tests.e2e.edge_checks import SCOPING

pytestmark = pytest.mark.e2e

OPENAI_HOST = "api.openai.com"
AZURE_HOST = "contoso.openai.azure.com"
GEMINI_HOST = "generativelanguage.googleapis.com"
# Priced: an unpriced model is refused before it reaches the provider.
PRICES = "input_price_per_mtok: 0.1, output_price_per_mtok: 1"
CONFIG = f"""
version: 1
applications:
  - id: tls-app
    org_id: tls-org
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, route: openai-main, {PRICES}}}
  - {{name: wrong-ca, provider: openai, upstream_model: gpt-4o-mini,
      route: openai-wrong-ca, {PRICES}}}
  - {{name: wrong-san, provider: openai, upstream_model: gpt-4o-mini,
      route: openai-wrong-san, {PRICES}}}
  - {{name: busy, provider: openai, upstream_model: gpt-4o-mini, route: openai-busy, {PRICES}}}
  - {{name: gpt-4o, provider: azure, route: azure-eu, {PRICES}}}
  # The deployment decides the path, the api-version and the model the provider gets.
  - {{name: gpt-4o-eu, provider: azure, route: azure-eu, upstream_model: gpt-4o,
      azure_deployment: gpt4o-eu-prod, api_version: 2024-10-21, {PRICES}}}
  - {{name: gpt-4o-v1, provider: azure, route: azure-eu, upstream_model: gpt4o-eu-prod,
      {PRICES}}}
  - {{name: gpt-4o-pinned, provider: openai, route: openai-main,
      upstream_model: gpt-4o-2024-08-06, {PRICES}}}
  - {{name: flash, provider: gemini, route: gemini-prod, upstream_model: gemini-2.0-flash-001,
      {PRICES}}}
"""
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi."}]}
AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"


@dataclass
class Fake:
    port: int

    def received(self) -> list[dict[str, Any]]:
        """What reached this fake provider, asked directly (not through Envoy)."""
        # Some fakes serve certificates no one should trust: the test reads them anyway.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)
        try:
            conn.request("GET", RECEIVED_PATH)
            found: list[dict[str, Any]] = json.loads(conn.getresponse().read())
            return found
        finally:
            conn.close()

    def by_request_id(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.received() if r["headers"].get("x-request-id") == request_id]


@dataclass
class Env:
    stack: Stack
    credentials: Path
    fakes: dict[str, Fake]


def write_key(credentials: Path, ref: str, key: str) -> None:
    """Replaces the key file by a rename, as a Kubernetes Secret update does."""
    staging = credentials.parent / f".{ref}.{uuid.uuid4().hex}"
    staging.write_text(secret_file_text(ref, key))
    os.replace(staging, credentials / f"{ref}.yaml")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("provider-tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    ca_file = workdir / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certs = {
        "good": ca.issue_cert(OPENAI_HOST, AZURE_HOST, GEMINI_HOST),
        "wrong-ca": other_ca.issue_cert(OPENAI_HOST),
        "wrong-san": ca.issue_cert("not-the-provider.example.com"),
    }
    for name, cert in certs.items():
        cert.private_key_and_cert_chain_pem.write_to_path(str(workdir / f"{name}.pem"))
    config = workdir / "config.yaml"
    config.write_text(CONFIG)
    credentials = workdir / "credentials"
    credentials.mkdir()
    stack = new_stack(workdir)
    stack.credentials_dir = credentials
    fakes: dict[str, Fake] = {}
    plan = [
        ("openai-main", "openai", OPENAI_HOST, "good", ()),
        ("openai-wrong-ca", "openai", OPENAI_HOST, "wrong-ca", ()),
        ("openai-wrong-san", "openai", OPENAI_HOST, "wrong-san", ()),
        ("openai-busy", "openai", OPENAI_HOST, "good", ("--status", "429", "--status-count", "1")),
        ("azure-eu", "azure", AZURE_HOST, "good", ()),
        ("gemini-prod", "gemini", GEMINI_HOST, "good", ()),
    ]
    try:
        for name, provider, host, cert_name, extra in plan:
            port = free_port()
            stack.start_fake_provider(
                name,
                port,
                args=["--tls-cert", str(workdir / f"{cert_name}.pem"), *extra],
                route=False,
            )
            fakes[name] = Fake(port)
            write_key(credentials, name, f"sk-{name}-1")
            stack.accounts.append(
                ProviderAccount(
                    name=name,
                    provider=provider,  # type: ignore[arg-type]
                    base_host=host,
                    credential_ref=name,
                    port=port,
                    ca_file=str(ca_file),
                    address="127.0.0.1",
                )
            )
        stack.start_fake_provider()
        stack.start_sidecar(config)
        stack.start_envoy()
        yield Env(stack, credentials, fakes)
    finally:
        stack.stop()


def send(
    stack: Stack,
    path: str,
    body: dict[str, Any],
    *,
    request_id: str,
    extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode()
    headers = {
        "authorization": f"Bearer {KEY}",
        "content-type": "application/json",
        "x-request-id": request_id,
        **(extra or {}),
    }
    conn = http.client.HTTPConnection("127.0.0.1", stack.listen_port, timeout=30)
    try:
        conn.request("POST", path, body=data, headers=headers)
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def test_the_provider_key_is_injected_and_nothing_internal_reaches_the_provider(
    env: Env,
) -> None:
    rid = str(uuid.uuid4())
    status, _, body = send(
        env.stack,
        "/v1/chat/completions",
        CHAT,
        request_id=rid,
        # A client naming a cluster itself is ignored: the model's route wins.
        # Nor does it pick the account's organisation or project, or pass its own key.
        extra={
            "x-policy-sidecar-route": "openai-wrong-san",
            "x-envoy-retry-on": "5xx",
            # Envoy passes on a client's x-envoy-* header it would not obey.
            "x-envoy-original-path": "/v1/elsewhere",
            "x-envoy-anything": "1",
            "x-api-key": "sk-callers-own",
            **SCOPING,
        },
    )
    assert status == 200, body
    (seen,) = env.fakes["openai-main"].by_request_id(rid)
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer sk-openai-main-1"
    assert not set(SCOPING) & set(headers), headers
    assert "x-api-key" not in headers
    assert all(KEY not in value for value in headers.values()), headers
    assert headers["host"] == OPENAI_HOST
    internal = [h for h in headers if h.startswith(("x-envoy-", "x-policy-sidecar-"))]
    assert internal == [], headers
    assert seen["path"] == "/v1/chat/completions"
    assert env.fakes["openai-wrong-san"].by_request_id(rid) == []
    assert usage_records(env.stack, {rid})[0]["decision"] == "allow"


def test_the_azure_path_and_api_version_reach_azure_with_its_key(env: Env) -> None:
    rid = str(uuid.uuid4())
    status, _, body = send(
        env.stack,
        AZURE_PATH,
        {"messages": CHAT["messages"]},
        request_id=rid,
        extra={"api-key": "callers-own-azure-key"},
    )
    assert status == 200, body
    (seen,) = env.fakes["azure-eu"].by_request_id(rid)
    assert seen["path"] == AZURE_PATH
    assert seen["headers"]["api-key"] == "sk-azure-eu-1"
    assert seen["headers"]["host"] == AZURE_HOST
    assert "authorization" not in seen["headers"]


def test_an_openai_call_reaches_the_azure_deployment_path_with_its_api_version(
    env: Env,
) -> None:
    rid = str(uuid.uuid4())
    sent = {**CHAT, "model": "gpt-4o-eu"}
    status, _, body = send(env.stack, "/v1/chat/completions", sent, request_id=rid)
    assert status == 200, body
    (seen,) = env.fakes["azure-eu"].by_request_id(rid)
    assert (
        seen["path"] == "/openai/deployments/gpt4o-eu-prod/chat/completions?api-version=2024-10-21"
    )
    assert seen["headers"]["api-key"] == "sk-azure-eu-1"
    assert "authorization" not in seen["headers"]
    assert json.loads(seen["body"]) == sent  # unchanged: Azure reads the path
    (record,) = usage_records(env.stack, {rid})
    assert (record["requested_model"], record["served_model"]) == ("gpt-4o-eu", "gpt-4o")
    assert record["decision"] == "allow" and record["completion_tokens"] > 0


def test_a_client_api_version_is_replaced_by_the_deployments(env: Env) -> None:
    rid = str(uuid.uuid4())
    path = "/openai/deployments/gpt-4o-eu/chat/completions?api-version=2023-05-15"
    status, _, body = send(env.stack, path, {"messages": CHAT["messages"]}, request_id=rid)
    assert status == 200, body
    (seen,) = env.fakes["azure-eu"].by_request_id(rid)
    assert (
        seen["path"] == "/openai/deployments/gpt4o-eu-prod/chat/completions?api-version=2024-10-21"
    )


def test_without_an_api_version_azure_gets_the_v1_path_and_its_deployment_as_model(
    env: Env,
) -> None:
    rid = str(uuid.uuid4())
    sent = {**CHAT, "model": "gpt-4o-v1", "stream": True}
    status, _, body = send(env.stack, "/v1/chat/completions", sent, request_id=rid)
    assert status == 200, body
    (seen,) = env.fakes["azure-eu"].by_request_id(rid)
    assert seen["path"] == "/openai/v1/chat/completions"
    assert json.loads(seen["body"])["model"] == "gpt4o-eu-prod"
    assert seen["headers"]["api-key"] == "sk-azure-eu-1"
    (record,) = usage_records(env.stack, {rid})
    assert (record["requested_model"], record["served_model"]) == ("gpt-4o-v1", "gpt4o-eu-prod")
    assert record["completion_tokens"] > 0  # the stream's usage was read


def test_the_upstream_model_replaces_the_clients_in_the_body(env: Env) -> None:
    rid = str(uuid.uuid4())
    sent = {**CHAT, "model": "gpt-4o-pinned"}
    status, _, body = send(env.stack, "/v1/chat/completions", sent, request_id=rid)
    assert status == 200, body
    (seen,) = env.fakes["openai-main"].by_request_id(rid)
    assert seen["path"] == "/v1/chat/completions"
    assert json.loads(seen["body"]) == {**sent, "model": "gpt-4o-2024-08-06"}
    (record,) = usage_records(env.stack, {rid})
    assert (record["requested_model"], record["served_model"]) == (
        "gpt-4o-pinned",
        "gpt-4o-2024-08-06",
    )
    assert record["decision"] == "allow" and record["prompt_tokens"] > 0


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (
            "/v1beta/models/flash:generateContent",
            "/v1beta/models/gemini-2.0-flash-001:generateContent",
        ),
        (
            "/v1beta/models/flash:streamGenerateContent?alt=sse",
            "/v1beta/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse",
        ),
        # A key in the query never reaches the provider, with the path rewritten too.
        (
            f"/v1beta/models/flash:streamGenerateContent?key={KEY}&alt=sse",
            "/v1beta/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse",
        ),
    ],
)
def test_gemini_gets_the_upstream_model_in_the_path(env: Env, sent: str, expected: str) -> None:
    rid = str(uuid.uuid4())
    request = {"contents": [{"role": "user", "parts": [{"text": "Say hi."}]}]}
    status, _, body = send(env.stack, sent, request, request_id=rid)
    assert status == 200, body
    (seen,) = env.fakes["gemini-prod"].by_request_id(rid)
    assert seen["path"] == expected
    assert seen["headers"]["x-goog-api-key"] == "sk-gemini-prod-1"
    assert seen["headers"]["host"] == GEMINI_HOST
    assert json.loads(seen["body"]) == request
    (record,) = usage_records(env.stack, {rid})
    assert (record["requested_model"], record["served_model"]) == (
        "flash",
        "gemini-2.0-flash-001",
    )
    assert record["completion_tokens"] > 0


@pytest.mark.parametrize("model", ["wrong-ca", "wrong-san"])
def test_a_certificate_envoy_cannot_verify_is_refused(env: Env, model: str) -> None:
    rid = str(uuid.uuid4())
    status, headers, body = send(
        env.stack, "/v1/chat/completions", {**CHAT, "model": model}, request_id=rid
    )
    assert status == 503, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "upstream_tls_error"
    assert headers[ERROR_HEADER] == "upstream_tls_error"
    assert env.fakes[f"openai-{model}"].by_request_id(rid) == []  # nothing was sent
    record = usage_records(env.stack, {rid})[0]
    assert record["decision"] == "error" and record["denied_by"] == "upstream_tls_error"


def test_a_429_is_retried_after_retry_after_and_recorded_once(env: Env) -> None:
    rid = str(uuid.uuid4())
    status, _, body = send(
        env.stack, "/v1/chat/completions", {**CHAT, "model": "busy"}, request_id=rid
    )
    assert status == 200, body
    attempts = env.fakes["openai-busy"].by_request_id(rid)
    assert len(attempts) == 2  # the 429, then the answer
    assert all(a["headers"]["authorization"] == "Bearer sk-openai-busy-1" for a in attempts)
    records = usage_records(env.stack, {rid})
    time.sleep(0.5)  # a second record would have been written by now
    records = usage_records(env.stack, {rid})
    assert len(records) == 1
    assert records[0]["decision"] == "allow" and records[0]["status_code"] == 200
    assert records[0]["completion_tokens"] > 0


def test_a_renamed_key_file_rotates_the_key_under_traffic(env: Env) -> None:
    failures: list[str] = []
    keys: list[str] = []
    stop = threading.Event()
    fake = env.fakes["openai-main"]

    def traffic() -> None:
        while not stop.is_set():
            rid = f"rotate-{uuid.uuid4()}"
            status, _, body = send(env.stack, "/v1/chat/completions", CHAT, request_id=rid)
            if status != 200:
                failures.append(f"{status} {body[:200]!r}")

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        write_key(env.credentials, "openai-main", "sk-openai-main-2")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = [
                r["headers"]["authorization"]
                for r in fake.received()
                if r["headers"].get("x-request-id", "").startswith("rotate-")
            ]
            if keys and keys[-1] == "Bearer sk-openai-main-2":
                break
            time.sleep(0.1)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert keys and keys[-1] == "Bearer sk-openai-main-2", keys[-5:]
    assert failures == []
    # Once rotated, the old key is never sent again.
    first_new = keys.index("Bearer sk-openai-main-2")
    assert set(keys[first_new:]) == {"Bearer sk-openai-main-2"}
    write_key(env.credentials, "openai-main", "sk-openai-main-1")
