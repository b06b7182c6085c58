"""The gRPC service over a real channel: dispatch of both filters' streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from policy_sidecar.extproc.server import ExternalProcessor
from policy_sidecar.extproc.services import Services
from tests.conftest import KEY, ListRecorder
from tests.extproc.messages import body, chat_body, request_headers


@pytest.fixture
async def stub(services: Services) -> AsyncIterator[pb_grpc.ExternalProcessorStub]:
    server = grpc.aio.server()
    pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(services), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.ExternalProcessorStub(channel)
    await server.stop(None)


async def test_policy_stream_answers_each_phase_then_closes(
    stub: pb_grpc.ExternalProcessorStub,
) -> None:
    data = chat_body()
    call = stub.Process()
    await call.write(pb.ProcessingRequest(request_headers=request_headers(KEY, body=data)))
    first = await call.read()
    assert first.WhichOneof("response") == "request_headers"
    await call.write(pb.ProcessingRequest(request_body=body(data)))
    second = await call.read()
    assert second.WhichOneof("response") == "request_body"
    assert await call.read() == grpc.aio.EOF  # the server ends the stream itself
    assert await call.code() == grpc.StatusCode.OK


async def test_denial_ends_the_stream_with_an_immediate_response(
    stub: pb_grpc.ExternalProcessorStub,
) -> None:
    call = stub.Process()
    await call.write(pb.ProcessingRequest(request_headers=request_headers("bad-key-000000000")))
    response = await call.read()
    assert response.immediate_response.status.code == 401
    assert await call.read() == grpc.aio.EOF


async def test_internal_failure_fails_closed_with_500(
    stub: pb_grpc.ExternalProcessorStub,
) -> None:
    call = stub.Process()
    # A body without headers first is a protocol violation the processor cannot handle.
    await call.write(pb.ProcessingRequest(request_body=body(b"{}")))
    response = await call.read()
    assert response.immediate_response.status.code == 500


async def test_an_observability_stream_is_read_and_ignored(
    stub: pb_grpc.ExternalProcessorStub, recorder: ListRecorder, services: Services
) -> None:
    # An Envoy configuration of an older version (with a usage filter): no replies, no
    # record; usage comes from the access log now.
    call = stub.Process()
    await call.write(
        pb.ProcessingRequest(request_headers=request_headers(KEY), observability_mode=True)
    )
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await services.tasks.drain()
    assert recorder.records == []
