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

from policy_sidecar.extproc.handover import Handover, handover_from_request
from policy_sidecar.extproc.services import Services
from policy_sidecar.identity import Identity
from policy_sidecar.metrics import observe_violation
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.providers.base import Route, Usage, UsageParser, is_streaming_response
from policy_sidecar.usage.clamp import clamp_and_log
from policy_sidecar.usage.record import Decision, UsageRecord


class UsageObserver:
    def __init__(self, services: Services) -> None:
        self._s = services
        self._handover: Handover | None = None
        self._parser: UsageParser | None = None
        self._status = 0
        self._response_bytes = 0
        self._first_byte_at: float | None = None
        self._streamed = False
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
            self._on_response_headers(msg.response_headers)
        elif kind == "response_body":
            body = msg.response_body
            if body.body:
                if self._first_byte_at is None:
                    self._first_byte_at = self._s.clock()
                self._response_bytes += len(body.body)
                if self._parser is not None:
                    self._parser.feed(body.body)
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
        else:
            self._streamed = "event-stream" in content_type.lower()
        if msg.end_of_stream:
            self._finish(complete=True)

    def _finish(self, *, complete: bool) -> None:
        self.done = True
        now = self._s.clock()
        usage = self._parser.finish() if self._parser is not None else None
        h = self._handover or Handover(request_id=str(uuid.uuid4()), started_at=now)
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
        # "error": the policy filter never saw this request (Envoy answered it itself).
        decision: Decision = (
            "error" if self._handover is None else "allow" if complete else "incomplete"
        )
        reported = usage or Usage()
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
            usage_reported=usage is not None,
            latency_ms=(now - h.started_at) * 1000.0,
            ttft_ms=(self._first_byte_at - h.started_at) * 1000.0
            if self._first_byte_at is not None
            else None,
            request_bytes=h.request_bytes,
            response_bytes=self._response_bytes,
            shadow_violations=h.shadow,
            usage_flags=clamped.flags,
        )
        if h.app_id is None or h.org_id is None or h.environment is None:
            self._s.recorder.record(record)
            return
        # Settling counters and post-checks need I/O: they finish in the background,
        # and the record is written once the post-checks are known.
        identity = Identity(h.app_id, h.org_id, h.environment, h.key_id or "")
        self._s.spawn(self._complete(identity, h, usage, record))

    async def _complete(
        self, identity: Identity, h: Handover, usage: Usage | None, record: UsageRecord
    ) -> None:
        deployment = self._s.models.get(h.requested_model or "")
        violations: tuple[str, ...] = ()
        try:
            await self._s.enforcer.settle(
                h.charges, usage, deployment, estimated_prompt=h.estimated_tokens
            )
            if h.provider is not None and usage is not None:
                engine = await self._s.policies.engine_for(identity)
                found = await self._s.enforcer.post_check(
                    engine, identity, post_context(h, record, usage)
                )
                violations = tuple(v.policy_id for v in found)
                for v in found:
                    observe_violation(v.policy_type, v.policy_id, "post_violation")
        finally:
            self._s.recorder.record(replace(record, post_violations=violations))


def post_context(h: Handover, record: UsageRecord, usage: Usage) -> PostRequestContext:
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
        cost_usd=record.cost_usd,
    )
