"""Errors Envoy answers itself, through the real Envoy: a provider-shaped JSON body
whose code names the cause, never an empty 503, and a usage record that says
``error`` with that cause (not ``allow``)."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policy_sidecar.cli import launcher
from policy_sidecar.cli.launcher import Stack, free_port, new_stack
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.envoy.render import EnvoyOptions, render_envoy_config
from tests.e2e.conftest import KEY, usage_records

pytestmark = pytest.mark.e2e

CONFIG = f"""
version: 1
applications:
  - id: any-app
    org_id: any-org
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
  - name: ghost
    provider: openai
    upstream_model: gpt-4o-mini
    route: nosuch
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - name: closed
    provider: openai
    upstream_model: gpt-4o-mini
    route: closedport
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - name: claude-ghost
    provider: anthropic
    route: nosuch
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - name: tls
    provider: openai
    upstream_model: gpt-4o-mini
    route: tlsplain
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
"""
# A cluster that speaks TLS to the plain-HTTP fake provider: the handshake fails.
TLS_SOCKET = """    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: api.openai.com
"""


def with_tls_cluster(options: EnvoyOptions) -> str:
    text = render_envoy_config(options)
    return text.replace("  - name: tlsplain\n", "  - name: tlsplain\n" + TLS_SOCKET, 1)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi."}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("envoy-errors")
    config = workdir / "config.yaml"
    config.write_text(CONFIG)
    running = new_stack(workdir)
    # A cluster Envoy has, pointing at a port nobody listens on.
    running.routes["closedport"] = free_port()
    running.routes["tlsplain"] = running.upstream_port
    try:
        running.start_fake_provider()
        running.start_sidecar(config)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(launcher, "render_envoy_config", with_tls_cluster)
            running.start_envoy()
        yield running
    finally:
        running.stop()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)


def send(
    stack: Stack,
    path: str,
    body: dict[str, Any],
    *,
    request_id: str | None = None,
    header_count: int | None = None,
) -> Reply:
    """POST with exactly ``header_count`` request headers when given (fillers added)."""
    data = json.dumps(body).encode()
    headers = [
        ("host", "gateway"),
        ("authorization", f"Bearer {KEY}"),
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
        ("x-request-id", request_id or str(uuid.uuid4())),
    ]
    if header_count is not None:
        headers += [(f"x-filler-{i}", "v") for i in range(header_count - len(headers))]
    conn = http.client.HTTPConnection("127.0.0.1", stack.listen_port, timeout=20)
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(data)
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def record_for(stack: Stack, request_id: str) -> dict[str, Any]:
    return usage_records(stack, {request_id})[0]


def test_a_model_routed_to_a_missing_cluster_is_a_named_error(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    reply = send(stack, "/v1/chat/completions", {**CHAT, "model": "ghost"}, request_id=rid)
    assert reply.status == 503
    error = reply.json()["error"]
    assert error["code"] == "upstream_not_configured" and error["type"] == "api_error"
    assert "cluster" in error["message"]
    assert reply.headers[ERROR_HEADER] == "upstream_not_configured"
    record = record_for(stack, rid)
    assert record["decision"] == "error" and record["denied_by"] == "upstream_not_configured"
    assert record["status_code"] == 503 and record["requested_model"] == "ghost"
    assert record["app_id"] == "any-app"


def test_anthropic_paths_get_anthropic_shaped_errors(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    body = {"model": "claude-ghost", "max_tokens": 5, "messages": CHAT["messages"]}
    reply = send(stack, "/v1/messages", body, request_id=rid)
    assert reply.status == 503
    payload = reply.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "api_error"
    assert payload["error"]["code"] == "upstream_not_configured"
    assert record_for(stack, rid)["decision"] == "error"


def test_upstream_connect_failure_is_a_named_error(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    reply = send(stack, "/v1/chat/completions", {**CHAT, "model": "closed"}, request_id=rid)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "upstream_connect_failed"
    record = record_for(stack, rid)
    assert record["decision"] == "error" and record["denied_by"] == "upstream_connect_failed"


def test_an_upstream_tls_failure_is_a_named_error(stack: Stack) -> None:
    rid = str(uuid.uuid4())
    reply = send(stack, "/v1/chat/completions", {**CHAT, "model": "tls"}, request_id=rid)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "upstream_tls_error"
    record = record_for(stack, rid)
    assert record["decision"] == "error" and record["denied_by"] == "upstream_tls_error"


@pytest.mark.parametrize("count", [94, 99, 100, 101])
def test_up_to_a_hundred_headers_and_some_room_pass(stack: Stack, count: int) -> None:
    # The sidecar's added headers count against Envoy's limit too: room is left.
    rid = str(uuid.uuid4())
    reply = send(stack, "/v1/chat/completions", CHAT, request_id=rid, header_count=count)
    assert reply.status == 200, reply.body
    assert record_for(stack, rid)["decision"] == "allow"


@pytest.mark.parametrize("count", [128, 129, 200])
def test_too_many_headers_is_a_json_431(stack: Stack, count: int) -> None:
    # 128: Envoy accepts them, but not with the sidecar's headers added (where that
    # starts depends on how many headers the sidecar adds, so no count below 128 here);
    # 129 and more: Envoy's codec refuses them. Either way a clear 431, never a 503.
    rid = str(uuid.uuid4())
    reply = send(stack, "/v1/chat/completions", CHAT, request_id=rid, header_count=count)
    assert reply.status == 431
    assert reply.json()["error"]["code"] == "request_header_fields_too_large"
    assert reply.headers[ERROR_HEADER] == "request_header_fields_too_large"
    if count <= 128:  # past the codec, so the request id is Envoy's and it is recorded
        record = record_for(stack, rid)
        assert record["decision"] == "error"
        assert record["denied_by"] == "request_header_fields_too_large"


def test_an_unreachable_sidecar_is_a_named_503(tmp_path: Path) -> None:
    bare = new_stack(tmp_path)  # Envoy and the provider, no sidecar listening
    try:
        bare.start_fake_provider()
        bare.start_envoy()
        reply = send(bare, "/v1/chat/completions", CHAT)
        assert reply.status == 503
        error = reply.json()["error"]
        assert error["code"] == "policy_sidecar_unavailable" and error["message"]
        reply = send(bare, "/v1/messages", {**CHAT, "max_tokens": 5})
        assert reply.json()["error"]["code"] == "policy_sidecar_unavailable"
        assert reply.json()["type"] == "error"
    finally:
        bare.stop()


def test_a_body_over_envoys_buffer_limit_is_a_json_413(stack: Stack) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (11 * 1024 * 1024)}]}
    reply = send(stack, "/v1/chat/completions", big)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"
