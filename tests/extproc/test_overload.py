"""Bounded in-flight work over a real gRPC channel: past the bound, a fast 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from prometheus_client import REGISTRY

from policy_sidecar.extproc.overload import InFlightGate, request_age
from policy_sidecar.extproc.server import ExternalProcessor
from policy_sidecar.extproc.services import Services
from tests.conftest import KEY
from tests.extproc.messages import body, chat_body, request_headers


@pytest.fixture
async def stub(services: Services) -> AsyncIterator[pb_grpc.ExternalProcessorStub]:
    server = grpc.aio.server()
    pb_grpc.add_ExternalProcessorServicer_to_server(
        ExternalProcessor(services, max_in_flight=1), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.ExternalProcessorStub(channel)
    await server.stop(None)


def rejections() -> float:
    return REGISTRY.get_sample_value("policy_sidecar_overload_rejections_total") or 0.0


async def held_request(
    stub: pb_grpc.ExternalProcessorStub, data: bytes
) -> grpc.aio.StreamStreamCall:
    """A request whose headers were answered and whose body has not been sent yet."""
    call = stub.Process()
    await call.write(pb.ProcessingRequest(request_headers=request_headers(KEY, body=data)))
    assert (await call.read()).WhichOneof("response") == "request_headers"
    return call


async def test_past_the_bound_a_request_gets_a_503_at_once_and_recovers(
    stub: pb_grpc.ExternalProcessorStub,
) -> None:
    data = chat_body()
    before = rejections()
    held = await held_request(stub, data)

    refused = stub.Process()
    await refused.write(pb.ProcessingRequest(request_headers=request_headers(KEY, body=data)))
    answer = (await refused.read()).immediate_response
    assert answer.status.code == 503
    headers = {h.header.key: h.header.raw_value.decode() for h in answer.headers.set_headers}
    assert headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"
    error = json.loads(answer.body)["error"]
    assert error["code"] == "sidecar_overloaded"
    assert "overloaded" in error["message"]
    assert answer.details == "policy_sidecar_sidecar_overloaded"
    assert await refused.read() == grpc.aio.EOF
    assert rejections() == before + 1

    # The held request finishes normally; its slot is free again at once.
    await held.write(pb.ProcessingRequest(request_body=body(data)))
    assert (await held.read()).WhichOneof("response") == "request_body"
    assert await held.read() == grpc.aio.EOF

    again = await held_request(stub, data)
    await again.write(pb.ProcessingRequest(request_body=body(data)))
    assert (await again.read()).WhichOneof("response") == "request_body"
    assert rejections() == before + 1


async def test_a_client_that_leaves_frees_its_slot(stub: pb_grpc.ExternalProcessorStub) -> None:
    data = chat_body()
    held = await held_request(stub, data)
    held.cancel()  # Envoy cancels the stream when the client goes away
    # Polled: the server sees the cancellation asynchronously.
    for _ in range(300):
        call = stub.Process()
        await call.write(pb.ProcessingRequest(request_headers=request_headers(KEY, body=data)))
        response = await call.read()
        call.cancel()
        if response.WhichOneof("response") == "request_headers":
            return
        await asyncio.sleep(0.1)
    pytest.fail("the cancelled request's slot was never freed")


def test_the_gate_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlightGate(0)


def headers_at(data: bytes, received: datetime) -> pb.ProcessingRequest:
    """A request-headers message with Envoy's ``request.time`` attribute."""
    msg = pb.ProcessingRequest(request_headers=request_headers(KEY, body=data))
    attributes = msg.attributes["envoy.filters.http.ext_proc"]
    attributes.fields["request.time"].string_value = received.isoformat()
    return msg


async def test_a_request_that_queued_too_long_gets_a_503(
    stub: pb_grpc.ExternalProcessorStub,
) -> None:
    data = chat_body()
    stale = stub.Process()  # waited 5 s before reaching the worker (bound: 0.25 s)
    await stale.write(headers_at(data, datetime.now(UTC) - timedelta(seconds=5)))
    assert (await stale.read()).immediate_response.status.code == 503

    fresh = stub.Process()
    await fresh.write(headers_at(data, datetime.now(UTC)))
    assert (await fresh.read()).WhichOneof("response") == "request_headers"
    await fresh.write(pb.ProcessingRequest(request_body=body(data)))
    assert (await fresh.read()).WhichOneof("response") == "request_body"


def test_request_age_is_unknown_without_the_attribute() -> None:
    msg = pb.ProcessingRequest(request_headers=request_headers(KEY))
    assert request_age(msg, time.time()) is None
    assert request_age(headers_at(b"{}", datetime.fromtimestamp(100, UTC)), 101.5) == 1.5
