"""The request-headers phase at the edge: free routes, internal headers, ?key=."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from tests.conftest import KEY, ListRecorder
from tests.extproc.messages import header_dict, request_headers

GEMINI = "/v1beta/models/gemini-2.0-flash:generateContent"


def status_of(response: object) -> int | None:
    if response.WhichOneof("response") != "immediate_response":  # type: ignore[attr-defined]
        return None
    return int(response.immediate_response.status.code)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/gpt-4o-mini", None),
        ("GET", "/v1beta/models", None),
        ("POST", "/v1/images/variations", 404),
        ("POST", "/v1/audio/voices", 404),
        ("POST", "/v1/assistants", 404),
        ("GET", "/v1/models/", 404),
        ("DELETE", "/v1/models/ft-x", 404),
    ],
)
async def test_unknown_endpoints_are_denied_by_default_free_routes_are_not(
    services: Services, recorder: ListRecorder, method: str, path: str, status: int | None
) -> None:
    assert services.unknown_paths == "deny"
    p = PolicyProcessor(services)
    body = b"{}" if method == "POST" else None
    response = await p.on_request_headers(request_headers(KEY, path=path, method=method, body=body))
    assert status_of(response) == status
    if status == 404:
        error = json.loads(response.immediate_response.body)["error"]
        assert error["code"] == "unknown_endpoint"
        [record] = recorder.records
        assert (record.decision, record.status_code) == ("deny", 404)


async def test_client_sent_internal_headers_are_removed_and_the_route_picked_again(
    services: Services,
) -> None:
    p = PolicyProcessor(services)
    extra = {"x-policy-sidecar-route": "echo", "x-policy-sidecar-app": "someone-else"}
    response = await p.on_request_headers(request_headers(KEY, extra=extra))
    common = response.request_headers.response
    assert set(extra) <= set(common.header_mutation.remove_headers)
    assert not any(k.startswith("x-policy-sidecar-") for k in header_dict(common.header_mutation))
    assert common.clear_route_cache


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (f"/v1/chat/completions?key={KEY}", {}),
        (f"/v1/messages?key={KEY}", {}),
        (f"/v1/models?key={KEY}", {}),
        # Even beside a valid header key: the query would carry it upstream.
        (f"/v1/chat/completions?key={KEY}", {"authorization": f"Bearer {KEY}"}),
    ],
)
async def test_query_key_is_refused_outside_gemini(
    services: Services, path: str, extra: dict[str, str]
) -> None:
    p = PolicyProcessor(services)
    response = await p.on_request_headers(request_headers(None, path=path, extra=extra))
    assert status_of(response) == 401
    error = json.loads(response.immediate_response.body)["error"]
    assert "query string" in error["message"]


@pytest.mark.parametrize(
    ("path", "forwarded"),
    [
        (f"{GEMINI}?key={KEY}", GEMINI),
        (f"{GEMINI}?alt=sse&key={KEY}", f"{GEMINI}?alt=sse"),
        (f"/v1beta/models?key={KEY}", "/v1beta/models"),
    ],
)
async def test_query_key_works_on_gemini_and_is_not_forwarded(
    make_services: Callable[..., Services], path: str, forwarded: str
) -> None:
    p = PolicyProcessor(make_services(models={}))
    method, body = ("GET", None) if path.startswith("/v1beta/models?") else ("POST", b"{}")
    response = await p.on_request_headers(
        request_headers(None, path=path, method=method, body=body)
    )
    assert status_of(response) is None
    mutation = response.request_headers.response.header_mutation
    assert header_dict(mutation)[":path"] == forwarded


@pytest.mark.parametrize("rule", ["deny", "passthrough"])
@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("POST", "/v1/batches", {}),
        ("GET", "/v1/files", {}),
        ("POST", "/v1/messages/batches", {}),
        ("GET", "/v1/realtime?model=gpt-realtime", {}),
        ("GET", "/v1/responses", {"connection": "Upgrade", "upgrade": "websocket"}),
    ],
)
async def test_unmetered_endpoints_are_403_even_when_unknown_paths_pass_through(
    make_services: Callable[..., Services],
    recorder: ListRecorder,
    rule: str,
    method: str,
    path: str,
    extra: dict[str, str],
) -> None:
    p = PolicyProcessor(make_services(unknown_paths=rule))
    body = b"{}" if method == "POST" else None
    headers = request_headers(KEY, path=path, method=method, body=body, extra=extra)
    response = await p.on_request_headers(headers)
    assert status_of(response) == 403
    error = json.loads(response.immediate_response.body)["error"]
    assert error["code"] == "endpoint_not_metered"
    assert "not metered" in error["message"]
    [record] = recorder.records
    assert (record.decision, record.status_code, record.app_id) == ("deny", 403, "app1")


def _with_repeats(pairs: list[tuple[str, str]]) -> pb.HttpHeaders:
    base = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", "2")]
    return pb.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in base + pairs]
        )
    )


@pytest.mark.parametrize(
    "pairs",
    [
        [("x-api-key", KEY), ("x-api-key", "sk-other")],
        [("x-api-key", "sk-other"), ("x-api-key", KEY)],
        [("x-api-key", KEY), ("x-api-key", KEY)],
        [("authorization", f"Bearer {KEY}"), ("api-key", KEY), ("api-key", "sk-other")],
        [("authorization", f"Bearer {KEY}"), ("authorization", f"Bearer {KEY}")],
    ],
)
async def test_a_key_header_given_twice_is_refused_whichever_comes_last(
    services: Services, recorder: ListRecorder, pairs: list[tuple[str, str]]
) -> None:
    response = await PolicyProcessor(services).on_request_headers(_with_repeats(pairs))
    assert status_of(response) == 401
    error = json.loads(response.immediate_response.body)["error"]
    assert error["code"] == "invalid_api_key" and "more than one" in error["message"]
    [record] = recorder.records
    assert (record.decision, record.status_code) == ("deny", 401)


async def test_other_repeated_headers_and_one_key_of_each_name_pass(services: Services) -> None:
    # Authorization decides; a different key under another name is removed, not refused.
    pairs = [("authorization", f"Bearer {KEY}"), ("x-api-key", "sk-other"), ("x-a", "1")]
    response = await PolicyProcessor(services).on_request_headers(
        _with_repeats([*pairs, ("x-a", "2")])
    )
    assert status_of(response) is None
    removed = response.request_headers.response.header_mutation.remove_headers
    assert {"authorization", "x-api-key"} <= set(removed)
