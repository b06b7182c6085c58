"""How the policy filter's `RequestFacts` reach the usage record: Envoy dynamic metadata.

Everything travels in the ``policy_sidecar`` namespace: the facts' own encoding
(`RequestFacts.to_metadata`), the ``rl_*`` values Envoy turns into the x-ratelimit-*
response headers (envoy.yaml reads them by those names), and ``w``, the worker that
handled the request: Envoy writes the request's access log line to that worker's file
(`envoy.access_log`), so the worker that reserved settles too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from policy_sidecar.envoy.access_log import WORKER_KEY
from policy_sidecar.extproc.facts import TICKET_KEY, RequestFacts
from policy_sidecar.extproc.responses import METADATA_NAMESPACE


def to_metadata(
    facts: RequestFacts,
    rate_headers: Mapping[str, str] | None = None,
    *,
    worker: str | None = None,
) -> dict[str, Any]:
    """The namespace's values for a response: the facts, the rate-limit headers and the
    worker."""
    out = facts.to_metadata()
    if worker:
        out[WORKER_KEY] = worker
    for name, value in (rate_headers or {}).items():
        # x-ratelimit-limit-requests -> rl_limit_requests, as envoy.yaml reads it.
        out["rl_" + name.removeprefix("x-ratelimit-").replace("-", "_")] = value
    return out


def placement(ticket: str | None, worker: str | None) -> dict[str, Any]:
    """The headers phase's metadata: the worker and the request's ticket. Envoy applies
    it before it sends the body, so the line of any request that reached the body phase
    goes to that worker's file and names its ticket (`extproc.reservations`)."""
    out: dict[str, Any] = {}
    if worker:
        out[WORKER_KEY] = worker
    if ticket:
        out[TICKET_KEY] = ticket
    return out


def facts_from_struct(metadata: struct_pb2.Struct) -> RequestFacts | None:
    """Reads the namespace from a ``metadata_context.filter_metadata`` map value."""
    return RequestFacts.from_metadata({k: _plain(v) for k, v in metadata.fields.items()})


def facts_from_request(metadata_context: Any) -> RequestFacts | None:
    """The facts in a ProcessingRequest's ``metadata_context``, if any."""
    ns = metadata_context.filter_metadata.get(METADATA_NAMESPACE)
    return facts_from_struct(ns) if ns is not None else None


def _plain(value: struct_pb2.Value) -> object:
    kind = value.WhichOneof("kind")
    if kind == "list_value":
        return [_plain(v) for v in value.list_value.values]
    if kind == "struct_value":
        return {k: _plain(v) for k, v in value.struct_value.fields.items()}
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)
