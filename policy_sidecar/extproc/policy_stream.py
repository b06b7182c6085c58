"""The policy filter's stream: request headers, then the buffered request body.

One ``PolicyProcessor`` per gRPC stream (one HTTP request). It decides whether the
request may go upstream and hands what it learned to the usage filter as metadata.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import missing_prices
from policy_sidecar.extproc.errors import error_response
from policy_sidecar.extproc.facts import TICKET_KEY, Ending, RequestFacts, usage_record
from policy_sidecar.extproc.handover import placement, to_metadata
from policy_sidecar.extproc.keys import (
    KEY_HEADERS,
    QUERY_KEY_PROVIDERS,
    api_key_from,
    repeated_key_header,
)
from policy_sidecar.extproc.responses import (
    METADATA_NAMESPACE,
    continue_request_body,
    continue_request_headers,
    header_mutation,
)
from policy_sidecar.extproc.services import Services
from policy_sidecar.identity.resolver import Identity, IdentityLookupThrottled
from policy_sidecar.observability.metrics import observe_violation
from policy_sidecar.policy.decision import Violation
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.providers import load_request
from policy_sidecar.providers.base import Provider, Route, Usage
from policy_sidecar.providers.paths import (
    canonical_path,
    free_route,
    has_query_key,
    without_query_key,
)
from policy_sidecar.providers.units import route_unit
from policy_sidecar.providers.unmetered import not_metered
from policy_sidecar.providers.upstream_request import same_api, upstream_request

log = logging.getLogger(__name__)

# Headers only the sidecar may set. Any the client sent are removed before a route is
# chosen, and Envoy removes them before the provider (envoy.yaml): the route header
# picks the upstream cluster, so a client must never be able to send it.
INTERNAL_HEADER_PREFIX = "x-policy-sidecar-"
ROUTE_HEADER = "x-policy-sidecar-route"
# Stripped so the upstream answers uncompressed and the usage parser reads plain bytes.
_REMOVED_HEADERS = (*KEY_HEADERS, "accept-encoding")
_RETRY_SOON = {"retry-after": "1"}
# The headers phase's usual mutation: nothing to set, the key headers to remove.
_STRIP = header_mutation(None, _REMOVED_HEADERS)
# The headers phase's usual answer per worker, without its ticket (`placed_headers`).
_PLACED: dict[str | None, pb.ProcessingResponse] = {}


def placed_headers(worker: str | None, ticket: str | None) -> pb.ProcessingResponse:
    """The headers phase's answer when there is nothing to do but strip the key headers
    and place the request: equal to ``continue_request_headers(mutation=_STRIP,
    metadata=placement(ticket, worker))``, copied from a template built once per worker
    with the ticket set on the copy (a third of the cost of building it)."""
    template = _PLACED.get(worker)
    if template is None:
        template = continue_request_headers(mutation=_STRIP, metadata=placement(None, worker))
        _PLACED[worker] = template
    response = pb.ProcessingResponse()
    response.CopyFrom(template)
    if ticket:
        namespace = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value
        namespace.fields[TICKET_KEY].string_value = ticket
    return response


@dataclass(frozen=True, slots=True)
class _Denial:
    status: int
    code: str
    message: str
    policy_id: str | None = None
    details: dict[str, Any] | None = None
    headers: Mapping[str, str] | None = None


def _unpriced(
    model: str, deployment: ModelDeployment, route: Route, price_key: str | None
) -> _Denial | None:
    """The refusal of a model whose route's price is not set (``unpriced: deny``)."""
    missing = missing_prices(deployment, route_unit(route.provider, route.operation), price_key)
    if not missing:
        return None
    message = (
        f"model '{model}' has no price set for {', '.join(missing)}: its usage cannot be"
        " metered, so it is refused until the platform team sets the price (0 for free)"
    )
    return _Denial(403, "model_unpriced", message, details={"missing_prices": list(missing)})


_FAILURE: dict[str, Any] = {
    "status": 500,
    "code": "policy_sidecar_error",
    "message": "the policy sidecar could not process this request",
}


class PolicyProcessor:
    """One per policy-filter stream; phases are called in order; not thread-safe."""

    def __init__(self, services: Services) -> None:
        self._s = services
        # Set by the headers phase, read by the body phase.
        self._facts: RequestFacts | None = None
        self._identity: Identity | None = None
        self._engine: PolicyEngine | None = None
        # The x-ratelimit-* headers of an admission, for Envoy to add to the response.
        self._rate_headers: Mapping[str, str] = {}
        self._provider: Provider | None = None
        self._route: Route | None = None
        self._path = ""
        self._content_type: str | None = None
        self.done = False

    async def on_request_headers(self, msg: pb.HttpHeaders) -> pb.ProcessingResponse:
        entries = msg.headers.headers
        headers = {h.key: h.raw_value.decode("latin-1") for h in entries}
        path, method = headers.get(":path", ""), headers.get(":method", "")
        self._content_type = headers.get("content-type")
        matched = self._s.providers.match(method, path)
        free = free_route(method, path) if matched is None else None
        if matched is not None:
            self._provider, self._route = matched
        self._facts = RequestFacts.for_route(
            headers.get("x-request-id") or str(uuid.uuid4()),
            self._s.clock(),
            self._route,
            self._s.pending.issue(),
        )
        query_key = has_query_key(path)
        self._path = without_query_key(path) if query_key else path  # as it goes upstream
        owner = self._route.provider if self._route else (free.provider if free else None)
        query_allowed = owner in QUERY_KEY_PROVIDERS
        if query_key and not query_allowed:
            message = "an API key in the query string (?key=) is accepted on Gemini endpoints only"
            return self._deny(_Denial(401, "invalid_api_key", message))
        # A name given twice kept only its last value above: refuse, not guess.
        repeated = (
            repeated_key_header(h.key for h in entries) if len(headers) < len(entries) else None
        )
        if repeated is not None:
            message = f"more than one {repeated} header: send one API key"
            return self._deny(_Denial(401, "invalid_api_key", message))
        key = api_key_from(headers, path, query_allowed=query_allowed)
        try:
            identity = await self._s.identities.resolve(key) if key else None
        except IdentityLookupThrottled:
            # Retryable: the key may be valid; only unknown keys are being throttled.
            message = "too many lookups of unknown API keys; retry shortly"
            return self._deny(_Denial(503, "key_lookup_throttled", message, headers=_RETRY_SOON))
        if identity is None:
            message = "invalid API key" if key else "missing API key"
            return self._deny(_Denial(401, "invalid_api_key", message))
        self._facts = self._facts.with_identity(identity)
        if not identity.environment_enabled:
            message = (
                f"environment {identity.environment!r} of this application is disabled by"
                " its operator; the API key is valid"
            )
            return self._deny(_Denial(403, "environment_disabled", message))
        self._identity = identity
        unmetered = not_metered(path, headers)
        if unmetered is not None:
            message = f"{method} {canonical_path(path)}: {unmetered}"
            return self._deny(_Denial(403, "endpoint_not_metered", message))
        declared = headers.get("content-length", "")
        if declared.isdigit():
            engine = await self._engine_for(identity)
            decision = engine.check_declared_size(identity, int(declared))
            if decision.denial is not None:
                return self._deny_by(decision.denial, request_bytes=int(declared))
        if matched is None and free is None and self._s.unknown_paths == "deny":
            message = f"no LLM API is known at {method} {path}"
            return self._deny(_Denial(404, "unknown_endpoint", message))
        internal = [name for name in headers if name.startswith(INTERNAL_HEADER_PREFIX)]
        if not (query_key or internal or msg.end_of_stream):
            # The usual request: the same answer as below, from a template.
            return placed_headers(self._s.worker, self._facts.ticket)
        mutation = header_mutation(
            {":path": without_query_key(path)} if query_key else None,
            (*_REMOVED_HEADERS, *internal),
        )
        if msg.end_of_stream:
            self.done = True
            if matched is not None:
                return self._deny(_Denial(400, "missing_body", "this endpoint needs a JSON body"))
        # The facts go with the body response; only a bodiless request needs them here.
        # Otherwise the worker and the ticket: a line without the body's facts still
        # reaches this worker, which gives the reservation back (extproc/reservations.py).
        metadata = (
            self._metadata(self._facts)
            if msg.end_of_stream
            else placement(self._facts.ticket, self._s.worker)
        )
        # A removed client header may have picked the cached route: pick it again.
        return continue_request_headers(
            mutation=mutation, metadata=metadata, clear_route_cache=bool(internal)
        )

    async def on_request_body(self, msg: pb.HttpBody) -> pb.ProcessingResponse:
        self.done = True
        identity = self._identity
        assert self._facts is not None, "body before headers"
        assert identity is not None, "body before headers"
        if self._provider is None or self._route is None:
            self._facts = self._facts.with_changes(request_bytes=len(msg.body))
            return continue_request_body(metadata=self._metadata(self._facts))
        provider, route = self._provider, self._route
        try:
            body = load_request(route, msg.body, self._content_type)
            parsed = provider.parse_request(route, body)
        except ValueError as exc:  # RequestError, json.JSONDecodeError, UnicodeDecodeError
            self._facts = self._facts.with_changes(request_bytes=len(msg.body))
            return self._deny(_Denial(400, "invalid_request", f"invalid request body: {exc}"))
        model = parsed.model or route.model_from_path or ""
        self._facts = self._facts.with_changes(
            request_bytes=len(msg.body),
            requested_model=model,
            stream=parsed.stream or route.stream_from_path,
            quantity=parsed.quantity,
            quantity_estimated=parsed.quantity_estimated,
            price_key=parsed.price_key,
        )
        deployment = self._s.models.get(model)
        if self._s.models and deployment is None:
            return self._deny(_Denial(404, "model_not_found", f"model '{model}' is not deployed"))
        if deployment is not None and not deployment.enabled:
            return self._deny(_Denial(403, "model_disabled", f"model '{model}' is disabled"))
        if deployment is not None and not same_api(route.provider, deployment.provider):
            return self._deny(
                _Denial(
                    400,
                    "model_provider_mismatch",
                    f"model '{model}' is served by {deployment.provider}: call it on the"
                    f" {deployment.provider} API, not the {route.provider} one",
                )
            )
        if deployment is not None and self._s.unpriced == "deny":
            unpriced = _unpriced(model, deployment, route, parsed.price_key)
            if unpriced is not None:
                return self._deny(unpriced)
        estimated = await self._s.estimator.estimate_async(provider.name, parsed)
        facts = self._facts.with_changes(
            estimated_tokens=estimated,
            max_tokens=parsed.max_output_tokens,
            served_model=deployment.upstream_model if deployment else model,
        )
        engine = await self._engine_for(identity)
        admission = await self._s.enforcer.admit(engine, identity, facts.pre_context(), deployment)
        decision = admission.decision
        shadow = tuple(v.policy_id for v in decision.shadow)
        if shadow or decision.denial is not None:
            # A denial's record names no served model: nothing went upstream.
            self._facts = self._facts.with_changes(
                estimated_tokens=facts.estimated_tokens,
                max_tokens=facts.max_tokens,
                shadow=shadow,
            )
        for v in decision.shadow:
            observe_violation(v.policy_type, v.policy_id, "shadow_deny")
        if decision.denial is not None:
            return self._deny_by(
                decision.denial, request_bytes=len(msg.body), headers=admission.headers
            )
        self._facts = facts.with_changes(shadow=shadow, charges=admission.charges)
        if not self._s.pending.add(self._facts, self._s.clock()):
            # The request's access log line came already (it ended while admitted): it
            # went nowhere, so the reservation goes back now.
            self._s.spawn(
                self._s.enforcer.settle(admission.charges, Usage(), None, estimated_prompt=0)
            )
        self._rate_headers = admission.headers
        patch = provider.request_patch(route, body) if self._s.inject_stream_usage else None
        # The deployment's path (Azure, Gemini) and upstream model; None: unchanged.
        upstream = upstream_request(
            deployment,
            route,
            self._path,
            body,
            patch,
            raw=msg.body,
            content_type=self._content_type,
        )
        new_body = upstream.body
        set_headers = {} if upstream.path is None else {":path": upstream.path}
        if new_body is not None:
            set_headers["content-length"] = str(len(new_body))
        if deployment is not None and deployment.route:
            set_headers[ROUTE_HEADER] = deployment.route
        return continue_request_body(
            mutation=header_mutation(set_headers) if set_headers else None,
            body=new_body,
            metadata=self._metadata(self._facts, self._rate_headers),
            clear_route_cache=ROUTE_HEADER in set_headers,
        )

    def on_failure(self) -> pb.ProcessingResponse:
        """The answer when a phase raised: a 500 in the provider's shape, fail closed.

        Recorded here as an ``error`` attributed to the caller the headers phase
        identified (the metadata says so, so the usage filter does not record it again);
        a reservation already made is released. Never raises.
        """
        self.done = True
        facts = self._facts
        if facts is None:
            return error_response(provider=None, **_FAILURE)
        charges = facts.charges
        facts = self._facts = facts.with_changes(recorded=True, charges=())
        try:
            if charges:
                # Nothing went upstream: settling to zero usage gives the reservation back.
                self._s.spawn(self._s.enforcer.settle(charges, Usage(), None, estimated_prompt=0))
            self._s.recorder.record(
                usage_record(facts, Ending("error", 500, ended_at=self._s.clock()))
            )
            metadata = self._metadata(facts)
        except Exception:
            log.exception("could not record a failed request")
            bare = RequestFacts(facts.request_id, facts.started_at, recorded=True)
            metadata = self._metadata(bare)
        return error_response(provider=self._provider, metadata=metadata, **_FAILURE)

    def _metadata(
        self, facts: RequestFacts, rate_headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return to_metadata(facts, rate_headers, worker=self._s.worker)

    async def _engine_for(self, identity: Identity) -> PolicyEngine:
        """The identity's engine, fetched once per request."""
        if self._engine is None:
            self._engine = await self._s.policies.engine_for(identity)
        return self._engine

    def _deny_by(
        self,
        violation: Violation,
        *,
        request_bytes: int,
        headers: Mapping[str, str] | None = None,
    ) -> pb.ProcessingResponse:
        observe_violation(violation.policy_type, violation.policy_id, "deny")
        if self._facts is not None:
            self._facts = self._facts.with_changes(request_bytes=request_bytes)
        all_headers = dict(headers or {})
        retry = violation.details.get("retry_after_seconds")
        if retry is not None:
            all_headers["retry-after"] = str(retry)
        return self._deny(
            _Denial(
                violation.status,
                violation.code,
                violation.message,
                policy_id=violation.policy_id,
                details=dict(violation.details),
                headers=all_headers,
            )
        )

    def _deny(self, denial: _Denial) -> pb.ProcessingResponse:
        self.done = True
        assert self._facts is not None
        facts = self._facts = self._facts.with_changes(recorded=True)
        log.info(
            "request denied",
            extra={
                "event": "denied",
                "request_id": facts.request_id,
                "app_id": facts.app_id,
                "status": denial.status,
                "code": denial.code,
                "policy_id": denial.policy_id,
                "model": facts.requested_model,
            },
        )
        ending = Ending("deny", denial.status, ended_at=self._s.clock(), denied_by=denial.policy_id)
        self._s.recorder.record(usage_record(facts, ending))
        return error_response(
            provider=self._provider,
            status=denial.status,
            code=denial.code,
            message=denial.message,
            details=denial.details,
            headers=denial.headers,
            metadata=self._metadata(facts),
        )
