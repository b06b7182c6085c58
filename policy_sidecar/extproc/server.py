"""The ext_proc gRPC service: loops over a policy filter stream, dispatching to a processor.

The response is not seen here: Envoy's Lua capture and access log carry it to the usage
record (`extproc.completion`). A stream in observability mode (an Envoy configuration
of an older version, with a usage filter) is read to its end and ignored.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.observability.metrics import PHASE_DURATION

log = logging.getLogger(__name__)
_EOF = grpc.aio.EOF


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, services: Services) -> None:
        self._services = services

    async def Process(self, request_iterator: Any, context: Any) -> None:
        first = await context.read()
        if first is _EOF:
            return
        if first.observability_mode:
            await _ignore(context)
        else:
            await self._police(first, context)

    async def _police(self, msg: pb.ProcessingRequest, context: Any) -> None:
        processor = PolicyProcessor(self._services)
        while True:
            kind = msg.WhichOneof("request")
            started = time.perf_counter()
            try:
                if kind == "request_headers":
                    response = await processor.on_request_headers(msg.request_headers)
                elif kind == "request_body":
                    response = await processor.on_request_body(msg.request_body)
                else:
                    # Only the phases in envoy.yaml are expected; anything else passes.
                    response = _continue(kind)
            except Exception:
                # Deliberately fail closed: a request we could not check does not go.
                log.exception("policy processing failed in phase %s", kind)
                await context.write(processor.on_failure())
                return
            PHASE_DURATION.labels(kind or "unknown").observe(time.perf_counter() - started)
            await context.write(response)
            if processor.done:
                return
            msg = await context.read()
            if msg is _EOF:
                return


async def _ignore(context: Any) -> None:
    log.warning("an observability-mode ext_proc stream is ignored: render Envoy's config again")
    while await context.read() is not _EOF:
        pass


def _continue(kind: str | None) -> pb.ProcessingResponse:
    common = pb.CommonResponse()
    if kind == "request_trailers":
        return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
    if kind == "response_headers":
        return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common))
    if kind == "response_body":
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))
    if kind == "response_trailers":
        return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())
    return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))
