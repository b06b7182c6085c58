"""No shape of request reaches the provider without the policy filter's decision,
through the real Envoy, HTTP/1.1 and HTTP/2 frame by frame.

Envoy's ext_proc runs the body phase only when the request has a body: an HTTP/2
request whose headers leave the stream open and whose trailers follow with no DATA
frame went upstream after the headers phase alone (no model check, no estimate, no
limit counted). The ``decided`` filter (envoy/guard.py) now refuses any request
without the decision's facts, whatever its shape.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from policy_sidecar.cli.launcher import Stack
from policy_sidecar.fakeprovider.app import RECEIVED_PATH

from .conftest import KEY, stack_of, usage_records
from .raw_http import Reply, h1_request, h2_request

pytestmark = pytest.mark.e2e

PATH = "/v1/chat/completions"
CONFIG = f"""
version: 1
applications:
  - id: shape-app
    org_id: shape-org
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.1, output_price_per_mtok: 1}}
  - {{name: gpt-4o, provider: openai, input_price_per_mtok: 0.1, output_price_per_mtok: 1}}
policies:
  - id: pol-allow
    name: mini only
    type: model_allowlist
    config: {{models: [gpt-4o-mini]}}
"""
ALLOWED = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
DENIED = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_of(tmp_path_factory, "shapes", CONFIG)


def reached_provider(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.upstream_port}{RECEIVED_PATH}"
    with urllib.request.urlopen(url, timeout=10) as response:
        received: list[dict[str, Any]] = json.load(response)
    return [r for r in received if r["headers"].get("x-request-id") == request_id]


def h2_headers(rid: str, *extra: tuple[str, str], method: str = "POST") -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":path", PATH),
        (":scheme", "http"),
        (":authority", "gateway"),
        ("authorization", f"Bearer {KEY}"),
        ("content-type", "application/json"),
        ("x-request-id", rid),
        *extra,
    ]


def h1_chunked_trailer_only(port: int, rid: str) -> Reply:
    raw = (
        f"POST {PATH} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\nx-request-id: {rid}\r\nconnection: close\r\n"
        "transfer-encoding: chunked\r\ntrailer: x-body\r\n\r\n"
        f"0\r\nx-body: {DENIED}\r\n\r\n"
    )
    return h1_request(port, raw.encode())


# Each shape carries no body the policy filter could read (or carries the JSON where no
# provider reads it): none may reach the provider.
SHAPES: dict[str, Callable[[int, str], Reply]] = {
    "h2 trailers, no DATA": lambda port, rid: h2_request(
        port, h2_headers(rid), trailers=[("x-anything", "1")]
    ),
    "h2 content-length 0, trailers": lambda port, rid: h2_request(
        port, h2_headers(rid, ("content-length", "0")), trailers=[("x-anything", "1")]
    ),
    "h2 JSON in a trailer": lambda port, rid: h2_request(
        port, h2_headers(rid), trailers=[("x-body", DENIED)]
    ),
    "h2 key in a trailer only": lambda port, rid: h2_request(
        port,
        [h for h in h2_headers(rid) if h[0] != "authorization"],
        trailers=[("authorization", f"Bearer {KEY}")],
    ),
    "h2 empty DATA ends the stream": lambda port, rid: h2_request(
        port, h2_headers(rid), end_with_empty_data=True
    ),
    "h2 headers end the stream": lambda port, rid: h2_request(port, h2_headers(rid)),
    "h1 chunked, trailer only": h1_chunked_trailer_only,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_no_shape_reaches_the_provider_undecided(stack: Stack, shape: str) -> None:
    rid = f"shape-{uuid.uuid4()}"
    reply = SHAPES[shape](stack.listen_port, rid)
    assert reply.status is not None and 400 <= reply.status < 500, reply
    assert reply.error_code in {
        "request_not_checked",  # the guard: Envoy skipped the body phase
        "invalid_request",  # the body phase ran on an empty body
        "missing_body",  # the headers ended the stream
        "invalid_api_key",  # no key in the headers
    }, reply
    (record,) = usage_records(stack, {rid})
    assert record["decision"] in ("deny", "error"), record
    assert record["status_code"] == reply.status
    assert reached_provider(stack, rid) == []


def test_trailers_without_data_are_refused_by_the_guard(stack: Stack) -> None:
    rid = f"shape-{uuid.uuid4()}"
    reply = h2_request(stack.listen_port, h2_headers(rid), trailers=[("x-anything", "1")])
    assert (reply.status, reply.error_code) == (400, "request_not_checked"), reply
    assert reply.headers["x-policy-sidecar-error"] == "request_not_checked"
    (record,) = usage_records(stack, {rid})
    assert (record["decision"], record["denied_by"]) == ("error", "request_not_checked")


@pytest.mark.parametrize("trailers", [None, [("x-anything", "1")]], ids=["plain", "trailers"])
def test_a_body_is_decided_with_or_without_trailers(
    stack: Stack, trailers: list[tuple[str, str]] | None
) -> None:
    denied, allowed = f"shape-{uuid.uuid4()}", f"shape-{uuid.uuid4()}"
    reply = h2_request(
        stack.listen_port, h2_headers(denied), data=[DENIED.encode()], trailers=trailers
    )
    assert (reply.status, reply.error_code) == (403, "model_not_allowed"), reply
    assert reached_provider(stack, denied) == []
    # The guard lets a decided request through; a body in several frames is one body.
    frames = [ALLOWED[i : i + 7].encode() for i in range(0, len(ALLOWED), 7)]
    reply = h2_request(stack.listen_port, h2_headers(allowed), data=frames, trailers=trailers)
    assert reply.status == 200, reply
    (sent,) = reached_provider(stack, allowed)
    assert json.loads(sent["body"])["model"] == "gpt-4o-mini"
    assert "authorization" not in sent["headers"]
    (record,) = usage_records(stack, {allowed})
    assert (record["decision"], record["requested_model"]) == ("allow", "gpt-4o-mini")


def test_bodiless_free_routes_still_pass(stack: Stack) -> None:
    rid = f"shape-{uuid.uuid4()}"
    headers = [h for h in h2_headers(rid, method="GET") if h[0] != ":path"]
    reply = h2_request(stack.listen_port, [(":path", "/v1/models"), *headers])
    assert reply.status == 200, reply
    assert reply.headers["x-fake-provider"] == "fake-provider"


def h1_chat(rid: str, *key_headers: str) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        f"content-length: {len(ALLOWED)}\r\nx-request-id: {rid}\r\nconnection: close\r\n"
    )
    return (head + "".join(f"{h}\r\n" for h in key_headers) + "\r\n" + ALLOWED).encode()


@pytest.mark.parametrize(
    "key_headers",
    [
        (f"x-api-key: {KEY}", "x-api-key: sk-other"),
        ("x-api-key: sk-other", f"x-api-key: {KEY}"),
        (f"authorization: Bearer {KEY}", "authorization: Bearer sk-other"),
        ("authorization: Bearer sk-other", f"authorization: Bearer {KEY}"),
        (f"authorization: Bearer {KEY}", f"api-key: {KEY}", "api-key: sk-other"),
    ],
)
def test_a_key_header_given_twice_is_refused_in_either_order(
    stack: Stack, key_headers: tuple[str, ...]
) -> None:
    rid = f"shape-{uuid.uuid4()}"
    reply = h1_request(stack.listen_port, h1_chat(rid, *key_headers))
    assert (reply.status, reply.error_code) == (401, "invalid_api_key"), reply
    assert reached_provider(stack, rid) == []
