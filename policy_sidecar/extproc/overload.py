"""Bounded in-flight work: past the bound a request is refused at once, not queued.

Without a bound, a worker past its capacity keeps accepting streams; each one waits for
the event loop behind all the others until Envoy's ``message_timeout`` fires and the
client gets a bare 503. With it, the worker holds at most ``limit`` requests between
their first message and their decision; the next one is answered immediately with a
provider-shaped 503 and ``Retry-After`` (a few microseconds of work), so latency of the
admitted requests stays bounded and the refusals are fast and explicit. As soon as a
decision finishes a slot is free again: recovery needs no timer.
"""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.extproc.errors import error_response
from policy_sidecar.observability.metrics import OVERLOAD_REJECTIONS
from policy_sidecar.providers.registry import ProviderRegistry

# How long a refused client should wait: one second is many times a decision's length,
# short enough that a burst costs its callers little.
RETRY_AFTER_SECONDS = 1
OVERLOAD_CODE = "sidecar_overloaded"


class InFlightGate:
    """Counts requests in flight in one worker (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"in-flight limit must be at least 1, got {limit}")
        self.limit = limit
        self.in_flight = 0

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


def overload_response(
    first: pb.ProcessingRequest, providers: ProviderRegistry
) -> pb.ProcessingResponse:
    """The 503 for a refused request, in the shape of the provider its path names."""
    OVERLOAD_REJECTIONS.inc()
    provider = None
    if first.WhichOneof("request") == "request_headers":
        headers = {
            h.key: h.raw_value.decode("latin-1") for h in first.request_headers.headers.headers
        }
        matched = providers.match(headers.get(":method", ""), headers.get(":path", ""))
        provider = matched[0] if matched is not None else None
    return error_response(
        provider=provider,
        status=503,
        code=OVERLOAD_CODE,
        message="The gateway is overloaded; retry after the time in the Retry-After header.",
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )
