"""A provider's ``x-policy-sidecar-*`` response headers never reach the client or the
access log, through the real Envoy, on every kind of upstream: the plain cluster, a
route cluster, a provider account's TLS cluster and a fallback group (each has its own
upstream filter chain). Envoy's own errors keep their ``x-policy-sidecar-error``.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.cli.launcher import Stack, free_port, new_stack
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.envoy.upstreams import INTERNAL_HEADER_PREFIX
from policy_sidecar.fakeprovider.app import RESPONSE_HEADERS_HEADER
from tests.e2e.conftest import KEY, usage_records
from tests.e2e.test_provider_tls_e2e import OPENAI_HOST, send, write_key

pytestmark = pytest.mark.e2e

PRICES = "input_price_per_mtok: 0.1, output_price_per_mtok: 1"
CONFIG = f"""
version: 1
applications:
  - id: hdr-app
    org_id: hdr-org
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, {PRICES}}}
  - {{name: routed, provider: openai, upstream_model: gpt-4o-mini, route: second, {PRICES}}}
  - {{name: account, provider: openai, upstream_model: gpt-4o-mini, route: acct-a, {PRICES}}}
  - {{name: grouped, provider: openai, upstream_model: gpt-4o-mini, route: acct-ab, {PRICES}}}
  - {{name: broken, provider: openai, upstream_model: gpt-4o-mini, route: broken, {PRICES}}}
  - {{name: ghost, provider: openai, upstream_model: gpt-4o-mini, route: nosuch, {PRICES}}}
"""
# What a provider (or something pretending to be one) answers with: the gateway's error
# header naming a gateway error, a route, identity, any other internal name, any case.
FORGED = {
    ERROR_HEADER: "upstream_timeout",
    "X-Policy-Sidecar-Route": "elsewhere",
    "x-policy-sidecar-app": "someone-else",
    "x-policy-sidecar-anything": "1",
}
ASK = {RESPONSE_HEADERS_HEADER: json.dumps(FORGED)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("internal-headers")
    ca = trustme.CA()
    ca_file = workdir / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = workdir / "cert.pem"
    ca.issue_cert(OPENAI_HOST).private_key_and_cert_chain_pem.write_to_path(str(cert))
    config = workdir / "config.yaml"
    config.write_text(CONFIG)
    credentials = workdir / "credentials"
    credentials.mkdir()
    running = new_stack(workdir)
    running.credentials_dir = credentials
    try:
        for name in ("acct-a", "acct-b"):
            port = free_port()
            running.start_fake_provider(name, port, args=["--tls-cert", str(cert)], route=False)
            write_key(credentials, name, f"sk-{name}")
            running.accounts.append(
                ProviderAccount(
                    name=name,
                    provider="openai",
                    base_host=OPENAI_HOST,
                    credential_ref=name,
                    port=port,
                    ca_file=str(ca_file),
                    address="127.0.0.1",
                )
            )
        running.fallback_groups.append(FallbackGroup("acct-ab", ("acct-a", "acct-b")))
        running.start_fake_provider("second", free_port())
        # 500 is not retried: the provider's own error reaches the client.
        running.start_fake_provider("broken", free_port(), args=["--status", "500"])
        running.start_fake_provider()
        running.start_sidecar(config)
        running.start_envoy()
        yield running
    finally:
        running.stop()


def internal(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith(INTERNAL_HEADER_PREFIX)}


def access_log_line(stack: Stack, request_id: str) -> dict[str, Any]:
    usage_records(stack, {request_id})  # the line has been read, so it is written
    for path in sorted(stack.access_log_dir.glob("access-*.log*")):
        for raw in path.read_text().splitlines():
            line = json.loads(raw)
            if line.get("id") == request_id:
                found: dict[str, Any] = line
                return found
    raise AssertionError(f"no access log line for {request_id}")


def test_the_fake_provider_really_sends_them(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.upstream_port, timeout=10)
    try:
        conn.request("GET", "/v1/models", headers=ASK)
        response = conn.getresponse()
        response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    assert internal(got) == {k.lower(): v for k, v in FORGED.items()}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "routed", "account", "grouped"])
def test_a_providers_internal_headers_are_dropped(stack: Stack, model: str, stream: bool) -> None:
    rid = str(uuid.uuid4())
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Hi."}]}
    if stream:
        body["stream"] = True
    status, headers, payload = send(stack, "/v1/chat/completions", body, request_id=rid, extra=ASK)
    assert status == 200, payload
    assert internal(headers) == {}, headers
    assert headers.get("x-fake-provider")  # the provider's other headers pass
    (record,) = usage_records(stack, {rid})
    assert (record["decision"], record["denied_by"]) == ("allow", None)
    assert record["completion_tokens"] > 0
    assert access_log_line(stack, rid)["err"] in (None, "-")


def test_a_providers_own_error_keeps_its_status_without_the_header(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    body = {"model": "broken", "messages": [{"role": "user", "content": "Hi."}]}
    status, headers, payload = send(stack, "/v1/chat/completions", body, request_id=rid, extra=ASK)
    assert status == 500
    assert "answers 500" in json.loads(payload)["error"]["message"]  # the provider's body
    assert internal(headers) == {}, headers
    (record,) = usage_records(stack, {rid})
    assert record["status_code"] == 500 and record["denied_by"] is None
    assert access_log_line(stack, rid)["err"] in (None, "-")


def test_a_passed_through_route_drops_them_too(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.listen_port, timeout=10)
    try:
        conn.request("GET", "/v1/models", headers={"authorization": f"Bearer {KEY}", **ASK})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    assert internal(headers) == {}, headers


def test_envoys_own_error_keeps_its_header(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    body = {"model": "ghost", "messages": [{"role": "user", "content": "Hi."}]}
    status, headers, _ = send(stack, "/v1/chat/completions", body, request_id=rid, extra=ASK)
    assert status == 503
    assert internal(headers) == {ERROR_HEADER: "upstream_not_configured"}
    (record,) = usage_records(stack, {rid})
    assert (record["decision"], record["denied_by"]) == ("error", "upstream_not_configured")
