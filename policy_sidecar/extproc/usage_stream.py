"""The usage filter's stream (observability mode): watch the response, record usage.

Envoy does not wait for replies on this stream, so nothing here adds latency to the
response. One ``UsageObserver`` per stream; ``on_message`` for each message in order,
then ``close`` exactly once, whether the response completed or the stream was cut.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.catalog.pricing import CatalogPriceBook, cost_usd
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.extproc.attributes import attributes_from_request
from policy_sidecar.extproc.charging import estimated_usage
from policy_sidecar.extproc.facts import Ending, RequestFacts, usage_record
from policy_sidecar.extproc.handover import facts_from_request
from policy_sidecar.extproc.services import Services
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.observability.metrics import observe_violation
from policy_sidecar.policy.context import PostRequestContext
from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers.base import Usage, UsageParser, is_streaming_response
from policy_sidecar.providers.units import bills_tokens, request_quantity, route_unit
from policy_sidecar.tokens.delivered import DeliveredText
from policy_sidecar.usage.clamp import clamp_and_log
from policy_sidecar.usage.record import Outcome, UsageRecord


class UsageObserver:
    def __init__(self, services: Services) -> None:
        self._s = services
        # When this filter first heard of the request: its start when Envoy answered the
        # request itself and the policy filter handed nothing over.
        self._opened_at = services.clock()
        self._facts: RequestFacts | None = None
        self._parser: UsageParser | None = None
        # Generated text seen so far (streams only), to charge a stream cut short.
        self._delivered: DeliveredText | None = None
        self._meter: UsageParser | None = None
        self._status = 0
        self._response_bytes = 0
        self._first_byte_at: float | None = None
        self._streamed = False
        # The cause of an error Envoy answered itself (its local_reply_config names it).
        self._envoy_error: str | None = None
        # Envoy's request id, for a request the policy filter never handed over.
        self._request_id: str | None = None
        # True once the record is written (or was written by the policy filter).
        self.done = False

    def on_message(self, msg: pb.ProcessingRequest) -> None:
        if self.done:
            return
        if self._facts is None:
            self._facts = facts_from_request(msg.metadata_context)
            if self._facts is not None and self._facts.recorded:
                self.done = True  # a denial: the policy filter recorded it
                return
        kind = msg.WhichOneof("request")
        if kind == "response_headers":
            if self._facts is None:
                attrs = attributes_from_request(msg.attributes)
                self._request_id = (attrs.request_id[:128] or None) if attrs else None
            self._on_response_headers(msg.response_headers)
        elif kind == "response_body":
            body = msg.response_body
            if body.body:
                if self._first_byte_at is None:
                    self._first_byte_at = self._s.clock()
                self._response_bytes += len(body.body)
                if self._parser is not None:
                    self._parser.feed(body.body)
                if self._meter is not None:
                    self._meter.feed(body.body)
            if body.end_of_stream:
                self._finish(complete=True)

    def close(self) -> None:
        """The stream ended: record what is known if the response did not complete."""
        if not self.done:
            self._finish(complete=False)

    def _on_response_headers(self, msg: pb.HttpHeaders) -> None:
        headers = {h.key: h.raw_value for h in msg.headers.headers}
        status = headers.get(":status", b"0")
        self._status = int(status) if status.isdigit() else 0
        if ERROR_HEADER in headers:
            self._envoy_error = headers[ERROR_HEADER].decode("latin-1")[:64]
        content_type = headers.get("content-type", b"").decode("latin-1")
        encoding = headers.get("content-encoding", b"").decode("latin-1") or None
        route = self._facts.route() if self._facts is not None else None
        if route is not None:
            provider = self._s.providers.get(route.provider)
            self._streamed = is_streaming_response(route, content_type)
            self._parser = provider.usage_parser(
                route, streaming=self._streamed, content_encoding=encoding
            )
            if self._streamed:
                self._delivered = DeliveredText()
                self._meter = with_encoding(self._delivered, encoding)
        else:
            self._streamed = "event-stream" in content_type.lower()
        if msg.end_of_stream:
            self._finish(complete=True)

    def _finish(self, *, complete: bool) -> None:
        self.done = True
        now = self._s.clock()
        usage = self._parser.finish() if self._parser is not None else None
        if self._facts is not None:
            usage = request_quantity(
                usage,
                unit=route_unit(self._facts.provider, self._facts.operation),
                quantity=self._facts.quantity,
                estimated=self._facts.quantity_estimated,
                price_key=self._facts.price_key,
                ok=200 <= self._status < 300,
            )
        if self._meter is not None:
            self._meter.finish()
        h = self._facts or RequestFacts(
            self._request_id or str(uuid.uuid4()), started_at=self._opened_at
        )
        # Bounded before anything settles or records it: see usage/clamp.py.
        deployment = self._s.models.get(h.requested_model or "")
        clamped = clamp_and_log(
            usage,
            request_id=h.request_id,
            max_tokens=h.max_tokens,
            context_window=deployment.context_window if deployment else None,
            estimated_prompt=h.estimated_tokens,
        )
        usage = clamped.usage
        # "error": Envoy answered the request itself (no cluster, connect failure, …),
        # or the policy filter never saw it.
        decision: Outcome = (
            "error"
            if self._facts is None or self._envoy_error is not None
            else "allow"
            if complete
            else "incomplete"
        )
        estimate = self._estimate(h, usage, complete=complete)
        ending = Ending(
            decision,
            self._status,
            ended_at=now,
            streamed=self._streamed,
            usage=estimate or usage,
            usage_reported=usage is not None and estimate is None,
            first_byte_at=self._first_byte_at,
            response_bytes=self._response_bytes,
            # For an error, the cause (see policy_sidecar/envoy/local_reply.py).
            denied_by=self._envoy_error,
            usage_flags=clamped.flags,
        )
        record = usage_record(h, ending)
        identity = h.identity()
        if identity is None:
            self._s.recorder.record(record)
            return
        # Settling counters and post-checks need I/O: they finish in the background,
        # and the record is written once the post-checks are known.
        self._s.spawn(self._complete(identity, h, usage, estimate, record))

    def _estimate(self, h: RequestFacts, usage: Usage | None, *, complete: bool) -> Usage | None:
        if (
            self._facts is None
            or h.provider is None
            or not bills_tokens(usage.unit if usage is not None else None)
        ):
            return None
        return estimated_usage(
            usage,
            complete=complete,
            streamed=self._streamed,
            status=self._status,
            operation=h.operation,
            estimated_prompt=h.estimated_tokens,
            max_tokens=h.max_tokens,
            delivered=self._delivered,
            response_bytes=self._response_bytes,
            encoding=self._s.estimator.encoding(h.provider, h.requested_model),
        )

    async def _complete(
        self,
        identity: Identity,
        h: RequestFacts,
        usage: Usage | None,
        estimate: Usage | None,
        record: UsageRecord,
    ) -> None:
        charged = estimate or usage
        prices = self._s.prices or CatalogPriceBook(self._s.models)
        # Priced once, here, at the catalogue's current prices, before the post-checks;
        # one lookup, so the cost and the price version stamped with it always agree.
        deployment = prices.deployment(h.requested_model, h.served_model)
        cost = None if deployment is None else cost_usd(charged or Usage(), deployment)
        version = deployment.price_version if deployment is not None and cost is not None else None
        violations: tuple[str, ...] = ()
        try:
            await self._s.enforcer.settle(
                h.charges,
                charged,
                deployment,
                estimated_prompt=h.estimated_tokens,
            )
            if h.provider is not None and usage is not None:
                engine = await self._s.policies.engine_for(identity)
                found = await self._s.enforcer.post_check(
                    engine, identity, post_context(h, record, charged or usage, cost)
                )
                violations = tuple(v.policy_id for v in found)
                for v in found:
                    observe_violation(v.policy_type, v.policy_id, "post_violation")
        finally:
            self._s.recorder.record(
                replace(record, cost_usd=cost, price_version=version, post_violations=violations)
            )


def post_context(
    h: RequestFacts, record: UsageRecord, usage: Usage, cost: float | None
) -> PostRequestContext:
    return PostRequestContext(
        pre=h.pre_context(),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        latency_ms=int(record.latency_ms or 0),
        response_size_bytes=record.response_bytes,
        status_code=record.status_code,
        cost_usd=cost,
    )
