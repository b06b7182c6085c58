"""Bounded work: past capacity a request is refused at once, not queued.

Without a bound, a worker past its capacity keeps accepting streams; each one waits for
the event loop behind all the others until Envoy's ``message_timeout`` fires and the
client gets a bare 503. Two bounds, either refuses a new request:

- in flight: at most ``limit`` requests between their first message and their decision;
- age: a request that waited longer than ``max_queue`` between reaching Envoy and its
  first message reaching us (known when the filter sends the ``request.time``
  attribute; 0: no such bound). Past capacity most of the queue is not in our handlers
  but in front of them, in gRPC's core (calls the worker's loop has not accepted yet),
  where only the request's age shows it.

A refused request is answered at once with a provider-shaped 503 and ``Retry-After``
(microseconds of work, so shedding frees the loop), admitted requests keep a bounded
latency, and nothing waits for a timeout. Recovery needs no timer: a finished decision
frees its slot, and the age falls as soon as the load does.

(An event-loop lag bound was tried and dropped: on a CPU-starved host every worker's
loop lags without any queue of ours, and it refused requests at normal load.)
"""

from __future__ import annotations

from datetime import datetime

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.extproc.errors import error_response
from policy_sidecar.observability.metrics import OVERLOAD_REJECTIONS
from policy_sidecar.providers.registry import ProviderRegistry

# How long a refused client should wait: one second is many times a decision's length,
# short enough that a burst costs its callers little.
RETRY_AFTER_SECONDS = 1
OVERLOAD_CODE = "sidecar_overloaded"


_ATTRIBUTES = "envoy.filters.http.ext_proc"


def request_age(first: pb.ProcessingRequest, now: float) -> float | None:
    """Seconds since Envoy received the request (``request.time``), if Envoy sent it."""
    attributes = first.attributes.get(_ATTRIBUTES)
    if attributes is None:
        return None
    value = attributes.fields.get("request.time")
    if value is None or not value.string_value:
        return None
    try:
        return now - datetime.fromisoformat(value.string_value).timestamp()
    except ValueError:
        return None


class InFlightGate:
    """Counts requests in flight in one worker (one event loop: no lock needed)."""

    def __init__(
        self,
        limit: int,
        *,
        max_queue: float = 0.25,
    ) -> None:
        if limit < 1:
            raise ValueError(f"in-flight limit must be at least 1, got {limit}")
        self.limit = limit
        self.max_queue = max_queue
        self.in_flight = 0

    def try_enter(self, age: float | None = None) -> bool:
        """Admit a request (``age``: how long it waited before reaching us, if known)."""
        if self.in_flight >= self.limit:
            return False
        if age is not None and self.max_queue > 0 and age > self.max_queue:
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
