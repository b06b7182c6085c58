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

from policy_sidecar.extproc.overload import InFlightGate, overload_response, request_age
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.observability.metrics import PHASE_DURATION, WORKER_REQUESTS

log = logging.getLogger(__name__)
_EOF = grpc.aio.EOF
# Per worker; POLICY_SIDECAR_MAX_IN_FLIGHT overrides it (docs/capacity.md).
DEFAULT_MAX_IN_FLIGHT = 64
# Seconds a request may have waited since Envoy received it (POLICY_SIDECAR_MAX_QUEUE_MS).
DEFAULT_MAX_QUEUE = 0.25
# The method's HTTP/2 path, for a server that routes by it (extproc.h2grpc).
PROCESS_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(
        self,
        services: Services,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_queue: float = DEFAULT_MAX_QUEUE,
        worker: str = "0",
    ) -> None:
        self._services = services
        self._requests = WORKER_REQUESTS.labels(worker)
        # The phase histograms' children, looked up once (``labels`` costs per call).
        self._phase_durations = {
            kind: PHASE_DURATION.labels(kind) for kind in ("request_headers", "request_body")
        }
        # Requests between their first message and their decision (see overload.py).
        self.gate = InFlightGate(max_in_flight, max_queue=max_queue)

    async def Process(self, request_iterator: Any, context: Any) -> None:
        first = await context.read()
        if first is _EOF:
            return
        if first.observability_mode:
            await _ignore(context)
            return
        self._requests.inc()
        if not self.gate.try_enter(request_age(first, time.time())):
            await context.write(overload_response(first, self._services.providers))
            return
        try:
            await self._police(first, context)
        finally:
            self.gate.leave()

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
            phase = self._phase_durations.get(kind or "unknown")
            if phase is None:
                phase = PHASE_DURATION.labels(kind or "unknown")
            phase.observe(time.perf_counter() - started)
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
