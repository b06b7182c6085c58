"""What the policy filter tells the usage filter about a request, via dynamic metadata.

The two filters' streams may land on different worker processes, so everything the
usage side needs travels in Envoy's dynamic metadata (namespace ``policy_sidecar``).
Keys are short because this crosses the wire twice per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from policy_sidecar.extproc.responses import METADATA_NAMESPACE
from policy_sidecar.limits.enforcer import Charge


@dataclass(slots=True)
class Handover:
    """Built up by the policy filter as it learns; read back by the usage filter."""

    request_id: str
    started_at: float  # epoch seconds when the policy filter saw the request
    # True when the policy filter already recorded the request (a denial).
    recorded: bool = False
    app_id: str | None = None
    org_id: str | None = None
    environment: str | None = None
    key_id: str | None = None
    provider: str | None = None
    operation: str | None = None
    # The rest of the provider route, so the usage side can rebuild it.
    model_from_path: str | None = None
    stream_from_path: bool = False
    api_version: str | None = None
    requested_model: str | None = None
    served_model: str | None = None
    stream: bool = False
    estimated_tokens: int = 0
    max_tokens: int | None = None
    request_bytes: int = 0
    shadow: tuple[str, ...] = ()
    # Token-limit reservations to settle when the response ends.
    charges: tuple[Charge, ...] = ()
    # x-ratelimit-* values for the response; Envoy adds them from this metadata.
    rate_headers: Mapping[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rid": self.request_id, "t0": self.started_at}
        for key, value in (
            ("app", self.app_id),
            ("org", self.org_id),
            ("env", self.environment),
            ("key", self.key_id),
            ("prov", self.provider),
            ("op", self.operation),
            ("model", self.requested_model),
            ("served", self.served_model),
            ("mp", self.model_from_path),
            ("apiv", self.api_version),
        ):
            if value is not None:
                out[key] = value
        if self.recorded:
            out["rec"] = True
        if self.stream:
            out["stream"] = True
        if self.stream_from_path:
            out["sp"] = True
        if self.estimated_tokens:
            out["est"] = self.estimated_tokens
        if self.request_bytes:
            out["rb"] = self.request_bytes
        if self.max_tokens is not None:
            out["mt"] = self.max_tokens
        if self.shadow:
            out["shadow"] = list(self.shadow)
        if self.charges:
            out["ch"] = [c.to_list() for c in self.charges]
        for name, value in self.rate_headers.items():
            # x-ratelimit-limit-requests -> rl_limit_requests, as envoy.yaml reads it.
            out["rl_" + name.removeprefix("x-ratelimit-").replace("-", "_")] = value
        return out

    @classmethod
    def from_struct(cls, metadata: struct_pb2.Struct) -> Handover | None:
        """Reads the namespace from a ``metadata_context.filter_metadata`` map value."""
        fields = metadata.fields
        rid = fields.get("rid")
        if rid is None:
            return None

        def s(key: str) -> str | None:
            v = fields.get(key)
            return v.string_value if v is not None else None

        def n(key: str) -> float:
            v = fields.get(key)
            return v.number_value if v is not None else 0.0

        shadow = fields.get("shadow")
        charges = fields.get("ch")
        max_tokens = fields.get("mt")
        return cls(
            request_id=rid.string_value,
            started_at=n("t0"),
            recorded="rec" in fields and fields["rec"].bool_value,
            app_id=s("app"),
            org_id=s("org"),
            environment=s("env"),
            key_id=s("key"),
            provider=s("prov"),
            operation=s("op"),
            requested_model=s("model"),
            served_model=s("served"),
            model_from_path=s("mp"),
            stream_from_path="sp" in fields and fields["sp"].bool_value,
            api_version=s("apiv"),
            stream="stream" in fields and fields["stream"].bool_value,
            estimated_tokens=int(n("est")),
            request_bytes=int(n("rb")),
            shadow=tuple(v.string_value for v in shadow.list_value.values) if shadow else (),
            max_tokens=int(max_tokens.number_value) if max_tokens is not None else None,
            charges=tuple(
                Charge.from_list([_plain(x) for x in item.list_value.values])
                for item in charges.list_value.values
            )
            if charges is not None
            else (),
        )


def _plain(value: struct_pb2.Value) -> object:
    kind = value.WhichOneof("kind")
    return value.string_value if kind == "string_value" else value.number_value


def handover_from_request(metadata_context: Any) -> Handover | None:
    """The handover in a ProcessingRequest's ``metadata_context``, if any."""
    ns = metadata_context.filter_metadata.get(METADATA_NAMESPACE)
    return Handover.from_struct(ns) if ns is not None else None
