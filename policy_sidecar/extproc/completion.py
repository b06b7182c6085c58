"""A request's usage record, from the access log line Envoy wrote when it ended.

The policy filter's facts (dynamic metadata) say who asked and what was reserved; the
Lua capture (`envoy.access_log.Capture`) says what the response delivered: its first
and last few KB, from which the provider's usage is parsed (`UsageParser.feed_window`
when the body was larger than both together). ``Completer.complete`` settles the
request's reservations, runs the post-request checks and returns the record; it is
called by the access log reader (`usage.from_log`), never on the request path.
"""

from __future__ import annotations

import logging
import uuid

from policy_sidecar.catalog.pricing import CatalogPriceBook, cost_usd
from policy_sidecar.envoy.access_log import Capture, LogEntry
from policy_sidecar.extproc.charging import delivered_completion, estimated_usage
from policy_sidecar.extproc.facts import (
    TICKET_KEY,
    Ending,
    RequestFacts,
    latency_ms,
    usage_record,
)
from policy_sidecar.extproc.services import Services
from policy_sidecar.observability.metrics import (
    observe_unsettled_reservation,
    observe_violation,
)
from policy_sidecar.policy.context import PostRequestContext
from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers.base import Usage, UsageParser, is_streaming_response
from policy_sidecar.providers.units import bills_tokens, request_quantity, route_unit
from policy_sidecar.tokens.delivered import DeliveredText
from policy_sidecar.usage.clamp import clamp_and_log
from policy_sidecar.usage.record import Outcome, UsageRecord

__all__ = ["Completer", "post_context"]

log = logging.getLogger(__name__)


def _read(parser: UsageParser, capture: Capture | None) -> None:
    if capture is None or capture.size == 0:
        return
    whole = capture.whole()
    if whole is not None:
        parser.feed(whole)
    else:
        parser.feed_window(capture.head, capture.tail)


class Completer:
    """Turns access log entries into usage records. One per worker; stateless."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def facts(self, entry: LogEntry) -> RequestFacts | None:
        """The policy filter's facts; raises ValueError when they are malformed."""
        return RequestFacts.from_metadata(entry.metadata) if entry.metadata else None

    async def complete(self, entry: LogEntry) -> UsageRecord | None:
        """The request's record; None when the policy filter recorded it already (a
        denial, a failure). Raises ValueError for malformed facts."""
        facts = self.facts(entry)
        # This worker's reservation for the request, if it still holds one.
        held = self._s.pending.take(
            facts.ticket if facts is not None else _ticket(entry),
            self._s.clock(),
            facts_arrived=facts is not None,
        )
        if facts is not None and facts.recorded:
            return None
        if facts is None and held is not None:
            return await self._given_back(entry, held)
        capture = entry.capture
        route = facts.route() if facts is not None else None
        encoding = entry.content_encoding
        parser: UsageParser | None = None
        delivered: DeliveredText | None = None
        if route is not None:
            streamed = is_streaming_response(route, entry.content_type)
            provider = self._s.providers.get(route.provider)
            parser = provider.usage_parser(route, streaming=streamed, content_encoding=encoding)
            _read(parser, capture)
        else:
            streamed = "event-stream" in entry.content_type.lower()
        usage = parser.finish() if parser is not None else None
        if facts is not None:
            # Routes billed by another unit: what the answer says, else what the request
            # fixed (an image answer larger than the capture keeps only its tail).
            usage = request_quantity(
                usage,
                unit=route_unit(facts.provider, facts.operation),
                quantity=facts.quantity,
                estimated=facts.quantity_estimated,
                price_key=facts.price_key,
                ok=200 <= entry.status < 300,
            )
        if capture is not None:
            complete = capture.ended
        else:
            complete = entry.status > 0 and not entry.client_cut
        if streamed and parser is not None and not (complete and usage is not None):
            # Only a stream cut short or without a usage report is charged its text.
            delivered = DeliveredText()
            meter = with_encoding(delivered, encoding)
            _read(meter, capture)
            meter.finish()
            if capture is not None and 0 < capture.size < entry.bytes_sent:
                # Cut between two saves: Envoy sent more than the capture holds.
                delivered.behind(capture.size)
        h = facts or RequestFacts(
            (entry.request_id or "")[:128] or str(uuid.uuid4()), started_at=entry.started_at
        )
        # Bounded before anything settles or records it: see usage/clamp.py.
        deployment = self._s.models.get(h.requested_model or "")
        clamped = clamp_and_log(
            usage,
            request_id=h.request_id,
            max_tokens=h.max_tokens,
            context_window=deployment.context_window if deployment else None,
            estimated_prompt=h.estimated_tokens,
            # A rejected completion count is charged what was delivered.
            estimated_completion=lambda: self._delivered_tokens(h, entry, delivered),
        )
        usage = clamped.usage
        # "error": Envoy answered the request itself (no cluster, connect failure, …),
        # or the policy filter never handed it over.
        decision: Outcome = (
            "error"
            if facts is None or entry.envoy_error is not None
            else "allow"
            if complete
            else "incomplete"
        )
        response_bytes = max(entry.bytes_sent, capture.size if capture is not None else 0)
        estimate = None
        if (
            facts is not None
            and h.provider is not None
            and bills_tokens(usage.unit if usage is not None else None)
        ):
            estimate = estimated_usage(
                usage,
                complete=complete,
                streamed=streamed,
                status=entry.status,
                operation=h.operation,
                estimated_prompt=h.estimated_tokens,
                max_tokens=h.max_tokens,
                delivered=delivered,
                response_bytes=response_bytes,
                encoding=self._s.estimator.encoding(h.provider, h.requested_model),
            )
        # Envoy's clock (ms) and the policy filter's: never a first byte before the
        # request or after the end.
        first_byte = capture.first_byte_at if capture is not None else None
        if first_byte is not None:
            first_byte = max(first_byte, h.started_at)
        ended_at = max(entry.ended_at, first_byte or h.started_at)
        ending = Ending(
            decision,
            entry.status,
            ended_at=ended_at,
            streamed=streamed,
            usage=estimate or usage,
            usage_reported=usage is not None and estimate is None and not clamped.estimated,
            first_byte_at=first_byte,
            response_bytes=response_bytes,
            # For an error, the cause (see policy_sidecar/envoy/local_reply.py).
            denied_by=entry.envoy_error,
            usage_flags=clamped.flags,
            upstream_account=entry.upstream_account,
        )
        if h.identity() is None:
            return usage_record(h, ending)
        return await self._settle(h, usage, estimate, ending)

    def _delivered_tokens(
        self, h: RequestFacts, entry: LogEntry, delivered: DeliveredText | None
    ) -> int:
        """The completion tokens the response delivered, estimated from its text (JSON
        or stream): what is charged when the upstream's own count is rejected."""
        if h.provider is None:
            return 0
        capture = entry.capture
        if delivered is None:
            delivered = DeliveredText()
            meter = with_encoding(delivered, entry.content_encoding)
            _read(meter, capture)
            meter.finish()
        return delivered_completion(
            delivered,
            operation=h.operation,
            response_bytes=max(entry.bytes_sent, capture.size if capture is not None else 0),
            max_tokens=h.max_tokens,
            encoding=self._s.estimator.encoding(h.provider, h.requested_model),
        )

    async def _settle(
        self, h: RequestFacts, usage: Usage | None, estimate: Usage | None, ending: Ending
    ) -> UsageRecord:
        identity = h.identity()
        assert identity is not None
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
                h.charges, charged, deployment, estimated_prompt=h.estimated_tokens
            )
            answered = ending.upstream_account
            if (
                answered
                and 200 <= ending.status_code < 300
                and answered != (deployment.account if deployment is not None else None)
            ):
                # A fallback group's model reserved no account quota: charge the account
                # that answered now (docs/connect-providers.md).
                await self._s.enforcer.charge_answering_account(
                    answered, charged, deployment, estimated_prompt=h.estimated_tokens
                )
            if h.provider is not None and usage is not None:
                engine = await self._s.policies.engine_for(identity)
                found = await self._s.enforcer.post_check(
                    engine, identity, post_context(h, ending, charged or usage, cost)
                )
                violations = tuple(v.policy_id for v in found)
                for v in found:
                    observe_violation(v.policy_type, v.policy_id, "post_violation")
        except Exception:
            # The record is kept even when settling or a check failed.
            log.exception("settling request %s failed", h.request_id[:128])
        # Built once, now, and metered here too (the recorder would copy it to do it).
        return usage_record(
            h,
            ending,
            cost_usd=cost,
            price_version=version,
            post_violations=violations,
            metered=True,
        )

    async def _given_back(self, entry: LogEntry, held: RequestFacts) -> UsageRecord:
        """An admitted request whose line came without the body phase's facts: Envoy never
        applied its answer, so nothing went upstream. Its reservation is given back and
        it is recorded with the facts this worker kept (extproc/reservations.py)."""
        ending = Ending(
            "error" if entry.envoy_error is not None else "incomplete",
            entry.status,
            ended_at=max(entry.ended_at, held.started_at),
            response_bytes=entry.bytes_sent,
            denied_by=entry.envoy_error,
        )
        try:
            await self._s.enforcer.settle(held.charges, Usage(), None, estimated_prompt=0)
        except Exception:
            log.exception("giving back the reservation of request %s failed", held.request_id[:128])
        observe_unsettled_reservation("released")
        return usage_record(held, ending, cost_usd=0.0)


def _ticket(entry: LogEntry) -> str | None:
    ticket = entry.metadata.get(TICKET_KEY)
    return ticket if isinstance(ticket, str) else None


def post_context(
    h: RequestFacts, ending: Ending, usage: Usage, cost: float | None
) -> PostRequestContext:
    return PostRequestContext(
        pre=h.pre_context(),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        latency_ms=int(latency_ms(h, ending) or 0),
        response_size_bytes=ending.response_bytes,
        status_code=ending.status_code,
        cost_usd=cost,
    )
