"""The usage filter's stream (observability mode): watch the response, record usage.

Envoy does not wait for replies on this stream, so nothing here adds latency to the
response. One ``UsageObserver`` per stream; ``on_message`` for each message in order,
then ``close`` exactly once, whether the response completed or the stream was cut.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.catalog.pricing import CatalogPriceBook, cost_usd
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.extproc.attributes import facts_from_attributes
from policy_sidecar.extproc.charging import estimated_usage
from policy_sidecar.extproc.handover import Handover, handover_from_request
from policy_sidecar.extproc.services import Services
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.observability.metrics import observe_violation
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers.base import Route, Usage, UsageParser, is_streaming_response
from policy_sidecar.tokens.delivered import DeliveredText
from policy_sidecar.usage.clamp import clamp_and_log
from policy_sidecar.usage.record import Outcome, UsageRecord


class UsageObserver:
    def __init__(self, services: Services) -> None:
        self._s = services
        self._handover: Handover | None = None
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
        if self._handover is None:
            self._handover = handover_from_request(msg.metadata_context)
            if self._handover is not None and self._handover.recorded:
                self.done = True  # a denial: the policy filter recorded it
                return
        kind = msg.WhichOneof("request")
        if kind == "response_headers":
            if self._handover is None:
                facts = facts_from_attributes(msg.attributes)
                self._request_id = (facts.request_id[:128] or None) if facts else None
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
        h = self._handover
        if h is not None and h.provider and h.operation:
            provider = self._s.providers.get(h.provider)
            route = Route(
                h.provider,
                h.operation,
                model_from_path=h.model_from_path,
                stream_from_path=h.stream_from_path,
                api_version=h.api_version,
            )
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
        if self._meter is not None:
            self._meter.finish()
        h = self._handover or Handover(
            request_id=self._request_id or str(uuid.uuid4()), started_at=now
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
            if self._handover is None or self._envoy_error is not None
            else "allow"
            if complete
            else "incomplete"
        )
        estimate = self._estimate(h, usage, complete=complete)
        reported = estimate or usage or Usage()
        record = UsageRecord(
            request_id=h.request_id,
            started_at=datetime.fromtimestamp(h.started_at, UTC),
            decision=decision,
            status_code=self._status,
            org_id=h.org_id,
            app_id=h.app_id,
            environment=h.environment,
            api_key_id=h.key_id,
            provider=h.provider,
            operation=h.operation,
            requested_model=h.requested_model,
            served_model=h.served_model,
            streamed=self._streamed,
            prompt_tokens=reported.prompt_tokens,
            completion_tokens=reported.completion_tokens,
            total_tokens=reported.total_tokens,
            cached_tokens=reported.cached_tokens,
            reasoning_tokens=reported.reasoning_tokens,
            estimated_tokens=h.estimated_tokens,
            usage_reported=usage is not None and estimate is None,
            latency_ms=(now - h.started_at) * 1000.0,
            ttft_ms=(self._first_byte_at - h.started_at) * 1000.0
            if self._first_byte_at is not None
            else None,
            request_bytes=h.request_bytes,
            response_bytes=self._response_bytes,
            shadow_violations=h.shadow,
            # For an error, the cause (see policy_sidecar/envoy/local_reply.py).
            denied_by=self._envoy_error,
            usage_flags=clamped.flags,
        )
        if h.app_id is None or h.org_id is None or h.environment is None:
            self._s.recorder.record(record)
            return
        # Settling counters and post-checks need I/O: they finish in the background,
        # and the record is written once the post-checks are known.
        identity = Identity(h.app_id, h.org_id, h.environment, h.key_id or "")
        self._s.spawn(self._complete(identity, h, usage, estimate, record))

    def _estimate(self, h: Handover, usage: Usage | None, *, complete: bool) -> Usage | None:
        if self._handover is None or h.provider is None:
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
        h: Handover,
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
    h: Handover, record: UsageRecord, usage: Usage, cost: float | None
) -> PostRequestContext:
    pre = PreRequestContext(
        request_size_bytes=h.request_bytes,
        estimated_tokens=h.estimated_tokens,
        model=h.requested_model or "",
        org_id=h.org_id or "",
        app_id=h.app_id or "",
        environment=h.environment or "",
        provider=h.provider or "",
        stream=h.stream,
        max_tokens=h.max_tokens,
    )
    return PostRequestContext(
        pre=pre,
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
