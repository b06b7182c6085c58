"""The policy filter's lifecycle: headers, then body; every way a request can end."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.handover import facts_from_struct, placement
from policy_sidecar.extproc.policy_stream import (
    _REMOVED_HEADERS,
    ROUTE_HEADER,
    PolicyProcessor,
    placed_headers,
)
from policy_sidecar.extproc.responses import (
    METADATA_NAMESPACE,
    continue_request_headers,
    header_mutation,
)
from policy_sidecar.extproc.services import Services
from policy_sidecar.identity.resolver import Identity, IdentityLookupThrottled
from tests.conftest import KEY, OTHER_KEY, ListRecorder
from tests.extproc.messages import body, chat_body, header_dict, request_headers


def error_of(response: object) -> tuple[int, dict[str, object]]:
    immediate = response.immediate_response  # type: ignore[attr-defined]
    return immediate.status.code, json.loads(immediate.body)["error"]


def handover_of(response: object) -> RequestFacts:
    md = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value  # type: ignore[attr-defined]
    found = facts_from_struct(md)
    assert found is not None
    return found


async def test_allowed_request_continues_with_identity_and_handover(
    services: Services, recorder: ListRecorder
) -> None:
    p = PolicyProcessor(services)
    data = chat_body()
    r1 = await p.on_request_headers(request_headers(KEY, body=data))
    assert r1.WhichOneof("response") == "request_headers"
    mutation = r1.request_headers.response.header_mutation
    # Identity travels as metadata, never as headers the provider would see.
    assert header_dict(mutation) == {}
    assert "authorization" in mutation.remove_headers
    assert "accept-encoding" in mutation.remove_headers
    assert not p.done
    r2 = await p.on_request_body(body(data))
    assert p.done
    assert r2.WhichOneof("response") == "request_body"
    assert not r2.request_body.response.HasField("body_mutation")
    h = handover_of(r2)
    assert (h.app_id, h.org_id, h.environment) == ("app1", "org1", "dev")
    assert (h.provider, h.operation, h.requested_model) == ("openai", "chat", "gpt-4o-mini")
    assert h.request_bytes == len(data)
    assert h.estimated_tokens > 0
    assert h.request_id == "rid-1"
    assert not h.recorded
    assert recorder.records == []  # the usage filter records allowed requests


@pytest.mark.parametrize("worker", [None, "", "50051", "50052"])
@pytest.mark.parametrize("ticket", [None, "", "b4fedf9f.1", "b4fedf9f.2"])
def test_placed_headers_equal_the_answer_built_fresh(
    worker: str | None, ticket: str | None
) -> None:
    """The usual headers-phase answer comes from a template per worker; twice in a row,
    for any worker and ticket, it equals the one built field by field, and answers
    do not share state (changing one leaves the next unchanged)."""
    fresh = continue_request_headers(
        mutation=header_mutation(None, _REMOVED_HEADERS), metadata=placement(ticket, worker)
    )
    first = placed_headers(worker, ticket)
    assert first == fresh
    first.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value.fields["x"].bool_value = True
    first.request_headers.response.header_mutation.remove_headers.append("x")
    assert placed_headers(worker, ticket) == fresh
    assert placed_headers(worker, ticket).SerializeToString(deterministic=True) == (
        fresh.SerializeToString(deterministic=True)
    )


async def test_usual_headers_answer_is_the_one_built_fresh(services: Services) -> None:
    """`on_request_headers` answers a usual request from the template: the same message
    as the general path builds (key headers removed, the worker and the ticket)."""
    p = PolicyProcessor(services)
    r1 = await p.on_request_headers(request_headers(KEY, body=chat_body()))
    assert p._facts is not None
    ticket = p._facts.ticket
    assert r1 == continue_request_headers(
        mutation=header_mutation(None, _REMOVED_HEADERS),
        metadata=placement(ticket, services.worker),
    )


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [(None, 401, "invalid_api_key"), ("ps-wrong-key-0123456789", 401, "invalid_api_key")],
)
async def test_missing_or_unknown_key_is_401(
    services: Services, recorder: ListRecorder, key: str | None, status: int, code: str
) -> None:
    p = PolicyProcessor(services)
    got_status, error = error_of(await p.on_request_headers(request_headers(key)))
    assert (got_status, error["code"], error["type"]) == (status, code, "authentication_error")
    assert p.done
    [record] = recorder.records
    assert (record.decision, record.status_code, record.app_id) == ("deny", 401, None)


class ThrottledResolver:
    async def resolve(self, api_key: str) -> Identity | None:
        raise IdentityLookupThrottled


async def test_throttled_key_lookup_is_a_retryable_503_not_401(
    make_services: Callable[..., Services], recorder: ListRecorder
) -> None:
    # A valid key that could not be looked up (flood protection) must not be told
    # it is invalid: 503 with Retry-After, which clients retry.
    p = PolicyProcessor(make_services(identities=ThrottledResolver()))
    response = await p.on_request_headers(request_headers(KEY))
    status, error = error_of(response)
    assert (status, error["code"]) == (503, "key_lookup_throttled")
    assert header_dict(response.immediate_response.headers)["retry-after"] == "1"
    [record] = recorder.records
    assert (record.decision, record.status_code) == ("deny", 503)


async def test_declared_oversized_body_is_413_before_buffering(
    services: Services, recorder: ListRecorder
) -> None:
    p = PolicyProcessor(services)
    big = b"x" * 5000
    status, error = error_of(await p.on_request_headers(request_headers(KEY, body=big)))
    assert status == 413
    assert error["code"] == "request_too_large"
    assert error["details"]["policy_id"] == "p-size"
    assert error["details"]["limit"] == 2000
    assert error["details"]["observed"] == 5000
    assert "small bodies" in str(error["message"])
    assert p.done
    assert recorder.records[0].denied_by == "p-size"


async def test_undeclared_oversized_body_is_413_at_body(services: Services) -> None:
    p = PolicyProcessor(services)
    headers = request_headers(KEY, body=b"", extra={"transfer-encoding": "chunked"})
    await p.on_request_headers(headers)
    big = chat_body(padding="y" * 5000)
    status, error = error_of(await p.on_request_body(body(big)))
    assert (status, error["details"]["policy_id"]) == (413, "p-size")


async def test_model_not_in_allowlist_is_403_naming_the_policy(
    services: Services, recorder: ListRecorder
) -> None:
    p = PolicyProcessor(services)
    data = chat_body("gpt-4o")
    await p.on_request_headers(request_headers(KEY, body=data))
    status, error = error_of(await p.on_request_body(body(data)))
    assert status == 403
    assert (error["code"], error["details"]["policy_id"], error["details"]["policy_name"]) == (
        "model_not_allowed",
        "p-models",
        "allowed models",
    )
    [record] = recorder.records
    assert (record.decision, record.denied_by, record.requested_model) == (
        "deny",
        "p-models",
        "gpt-4o",
    )


async def test_allowlist_is_scoped_to_its_app(services: Services) -> None:
    p = PolicyProcessor(services)
    data = chat_body("gpt-4o")
    await p.on_request_headers(request_headers(OTHER_KEY, body=data))
    response = await p.on_request_body(body(data))
    assert response.WhichOneof("response") == "request_body"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{not json", "invalid request body"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"model": 5, "messages": []}).encode(), "'model'"),
        (json.dumps({"model": "gpt-4o-mini", "messages": "hi"}).encode(), "'messages'"),
        (json.dumps({"model": "gpt-4o-mini", "messages": [], "stream": "yes"}).encode(), "stream"),
    ],
)
async def test_malformed_body_is_400(
    services: Services, recorder: ListRecorder, data: bytes, fragment: str
) -> None:
    p = PolicyProcessor(services)
    await p.on_request_headers(request_headers(KEY, body=data))
    status, error = error_of(await p.on_request_body(body(data)))
    assert status == 400
    assert fragment in str(error["message"])
    assert recorder.records[0].status_code == 400


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("unknown-model", 404, "model_not_found"), ("retired", 403, "model_disabled")],
)
async def test_unknown_and_disabled_models_are_refused(
    services: Services, model: str, status: int, code: str
) -> None:
    p = PolicyProcessor(services)
    data = chat_body(model)
    await p.on_request_headers(request_headers(KEY, body=data))
    got, error = error_of(await p.on_request_body(body(data)))
    assert (got, error["code"]) == (status, code)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        (
            "/v1beta/models/gpt-4o-mini:generateContent",
            b'{"contents": [{"parts": [{"text": "hi"}]}]}',
        ),
        (
            "/v1/messages",
            b'{"model": "gpt-4o-mini", "max_tokens": 5,'
            b' "messages": [{"role": "user", "content": "hi"}]}',
        ),
    ],
)
async def test_a_model_is_called_on_its_own_providers_api(
    services: Services, recorder: ListRecorder, path: str, data: bytes
) -> None:
    """An OpenAI model asked for on Gemini's or Anthropic's API would be parsed and
    metered as the wrong provider's: refused, naming the API to use."""
    p = PolicyProcessor(services)
    await p.on_request_headers(request_headers(KEY, path=path, body=data))
    status, error = error_of(await p.on_request_body(body(data)))
    assert status == 400
    assert "served by openai: call it on the openai API" in str(error["message"])
    [record] = recorder.records
    assert (record.decision, record.status_code) == ("deny", 400)


async def test_alias_is_rewritten_and_routed(services: Services) -> None:
    p = PolicyProcessor(services)
    data = chat_body("fast")
    await p.on_request_headers(request_headers(KEY, body=data))
    response = await p.on_request_body(body(data))
    common = response.request_body.response
    sent = json.loads(common.body_mutation.body)
    assert sent["model"] == "gpt-4o-mini"
    headers = header_dict(common.header_mutation)
    assert headers[ROUTE_HEADER] == "cluster-b"
    assert headers["content-length"] == str(len(common.body_mutation.body))
    assert handover_of(response).served_model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("options", "inject", "expect_patch"),
    [
        (None, True, True),
        ({"include_usage": False}, True, True),
        ({"include_usage": True}, True, False),
        (None, False, False),
    ],
)
async def test_stream_usage_injection(
    make_services: Callable[..., Services], options: object, inject: bool, expect_patch: bool
) -> None:
    p = PolicyProcessor(make_services(inject_stream_usage=inject))
    extra = {"stream": True} | ({"stream_options": options} if options is not None else {})
    data = chat_body(**extra)
    await p.on_request_headers(request_headers(KEY, body=data))
    response = await p.on_request_body(body(data))
    common = response.request_body.response
    assert common.HasField("body_mutation") is expect_patch
    if expect_patch:
        sent = json.loads(common.body_mutation.body)
        assert sent["stream_options"]["include_usage"] is True
        assert sent["messages"] == json.loads(data)["messages"]


@pytest.mark.parametrize(("rule", "expect_status"), [("passthrough", None), ("deny", 404)])
async def test_unknown_path_rule(
    make_services: Callable[..., Services], rule: str, expect_status: int | None
) -> None:
    p = PolicyProcessor(make_services(unknown_paths=rule))
    response = await p.on_request_headers(
        request_headers(KEY, path="/v1/assistants", method="GET", body=None)
    )
    if expect_status is None:
        assert response.WhichOneof("response") == "request_headers"
        assert handover_of(response).provider is None
    else:
        assert error_of(response)[0] == expect_status
    assert p.done


async def test_known_endpoint_without_body_is_400(services: Services) -> None:
    p = PolicyProcessor(services)
    response = await p.on_request_headers(request_headers(KEY, body=None))
    status, error = error_of(response)
    assert (status, error["code"]) == (400, "missing_body")


@pytest.mark.parametrize(
    "header",
    [{"x-api-key": KEY}, {"api-key": KEY}, {"x-goog-api-key": KEY}],
)
async def test_keys_in_provider_specific_headers(
    services: Services, header: dict[str, str]
) -> None:
    p = PolicyProcessor(services)
    response = await p.on_request_headers(request_headers(None, extra=header))
    assert response.WhichOneof("response") == "request_headers"
    removed = response.request_headers.response.header_mutation.remove_headers
    assert next(iter(header)) in removed
