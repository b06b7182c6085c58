"""One request's facts: the one value the request path, the usage record and the checks use.

The policy filter builds a `RequestFacts` as it learns (each step a new frozen value),
hands it to the usage filter in Envoy's dynamic metadata, and the usage filter reads
back the same value. The two filters' streams may land on different worker processes,
so everything the usage side needs is here.

The metadata encoding is derived from the fields and their types (`to_metadata`,
`from_metadata`); a field names its short wire key in its ``metadata`` (this crosses
the wire twice per request). Adding a field is adding it here, nothing else. Pure:
plain values in and out; `extproc.handover` reads them from protobuf.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from policy_sidecar.counters.values import Window, WindowUnit
from policy_sidecar.envoy.guard import REQUEST_ID_KEY
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Charge
from policy_sidecar.policy.context import PreRequestContext
from policy_sidecar.providers.base import Route, Usage
from policy_sidecar.usage.metering import metering_of
from policy_sidecar.usage.record import Outcome, UsageRecord

__all__ = ["TICKET_KEY", "Ending", "RequestFacts", "latency_ms", "usage_record"]

# The metadata key of `RequestFacts.ticket`, which also travels without the facts.
TICKET_KEY = "tk"


def _key(short: str) -> Any:
    return {"key": short}


# Not ``slots=True``: `with_changes` copies the instance dict in one C call, a third of
# the cost of setting 24 slots one by one.
@dataclass(frozen=True)
class RequestFacts:
    """What is known about one request; each field is encoded under its ``key``."""

    request_id: str = field(metadata=_key(REQUEST_ID_KEY))
    started_at: float = field(metadata=_key("t0"))  # epoch seconds, policy filter
    # True when the policy filter already recorded the request (a denial, a failure).
    recorded: bool = field(default=False, metadata=_key("rec"))
    app_id: str | None = field(default=None, metadata=_key("app"))
    org_id: str | None = field(default=None, metadata=_key("org"))
    environment: str | None = field(default=None, metadata=_key("env"))
    key_id: str | None = field(default=None, metadata=_key("key"))
    # The provider route, so the usage side reads the response the same way.
    provider: str | None = field(default=None, metadata=_key("prov"))
    operation: str | None = field(default=None, metadata=_key("op"))
    model_from_path: str | None = field(default=None, metadata=_key("mp"))
    stream_from_path: bool = field(default=False, metadata=_key("sp"))
    api_version: str | None = field(default=None, metadata=_key("apiv"))
    requested_model: str | None = field(default=None, metadata=_key("model"))
    # The deployment's upstream name; set once the request is admitted.
    served_model: str | None = field(default=None, metadata=_key("served"))
    stream: bool = field(default=False, metadata=_key("stream"))
    estimated_tokens: int = field(default=0, metadata=_key("est"))
    max_tokens: int | None = field(default=None, metadata=_key("mt"))
    request_bytes: int = field(default=0, metadata=_key("rb"))
    shadow: tuple[str, ...] = field(default=(), metadata=_key("shadow"))
    # Token-limit reservations to settle when the response ends.
    charges: tuple[Charge, ...] = field(default=(), metadata=_key("ch"))
    # Routes billed by another unit: what the request fixes (``ParsedRequest``), used
    # when the response does not say.
    quantity: float | None = field(default=None, metadata=_key("qty"))
    quantity_estimated: bool = field(default=False, metadata=_key("qe"))
    price_key: str | None = field(default=None, metadata=_key("pk"))
    # This request's reservations in its worker (`extproc.reservations`): unique, unlike
    # the request id. Also sent alone in the headers phase (`TICKET_KEY`).
    ticket: str | None = field(default=None, metadata=_key(TICKET_KEY))

    @classmethod
    def for_route(
        cls, request_id: str, started_at: float, route: Route | None, ticket: str | None = None
    ) -> RequestFacts:
        if route is None:
            return cls(request_id=request_id, started_at=started_at, ticket=ticket)
        return cls(
            request_id=request_id,
            started_at=started_at,
            ticket=ticket,
            provider=route.provider,
            operation=route.operation,
            model_from_path=route.model_from_path,
            stream_from_path=route.stream_from_path,
            api_version=route.api_version,
        )

    def with_changes(self, /, **changes: Any) -> RequestFacts:
        """``dataclasses.replace(self, **changes)`` at about a fifth of its cost: the
        instance dict is copied and updated instead of a keyword call of the 24-field
        ``__init__`` (the request path makes a few copies a request). Valid because the
        class has no ``__post_init__``, every field is an init field and the dict holds
        the fields only (`tests/extproc/test_facts.py` checks all three); an unknown name
        raises TypeError, as ``replace`` does."""
        if not changes.keys() <= _NAME_SET:
            unknown = ", ".join(sorted(changes.keys() - _NAME_SET))
            raise TypeError(f"RequestFacts has no field(s) {unknown}")
        new = _NEW(RequestFacts)
        values = new.__dict__
        values.update(self.__dict__)
        values.update(changes)
        return new

    def with_identity(self, identity: Identity) -> RequestFacts:
        return self.with_changes(
            app_id=identity.app_id,
            org_id=identity.org_id,
            environment=identity.environment,
            key_id=identity.key_id,
        )

    def route(self) -> Route | None:
        if not self.provider or not self.operation:
            return None
        return Route(
            self.provider,
            self.operation,
            model_from_path=self.model_from_path,
            stream_from_path=self.stream_from_path,
            api_version=self.api_version,
        )

    def identity(self) -> Identity | None:
        if self.app_id is None or self.org_id is None or self.environment is None:
            return None
        return Identity(self.app_id, self.org_id, self.environment, self.key_id or "")

    def pre_context(self) -> PreRequestContext:
        """The pre-request context the policies see, before and after the response."""
        model = self.requested_model or ""
        served = self.served_model
        return PreRequestContext(
            request_size_bytes=self.request_bytes,
            estimated_tokens=self.estimated_tokens,
            model=model,
            org_id=self.org_id or "",
            app_id=self.app_id or "",
            environment=self.environment or "",
            provider=self.provider or "",
            stream=self.stream,
            max_tokens=self.max_tokens,
            upstream_model=served if served is not None and served != model else "",
        )

    def to_metadata(self) -> dict[str, Any]:
        """The metadata namespace's values; a field at its default is left out."""
        out: dict[str, Any] = {}
        for c in _CODECS:
            value = getattr(self, c.name)
            if c.required or value != c.default:
                out[c.key] = c.encode(value)
        return out

    @classmethod
    def from_metadata(cls, values: Mapping[str, Any]) -> RequestFacts | None:
        """The inverse of `to_metadata` over plain values (numbers may come back as
        floats, lists as lists). None when the request id is absent; a null or missing
        value is the field's default."""
        if values.get(REQUEST_ID_KEY) is None:
            return None
        # The keys present (a line carries about half of the 24) mapped to their codec,
        # into a copy of the defaults in field order: the instance dict `__init__` would
        # build (see `with_changes`), at about half the cost of a `get` per codec and
        # the keyword call. Anything unusual (a value that does not decode, a required
        # key missing) goes the codec-order way below, for the same result or error.
        state = _DEFAULTS.copy()
        codec_for = _BY_KEY.get
        try:
            for key, raw in values.items():
                c = codec_for(key)
                if c is not None and raw is not None:
                    state[c.name] = c.decode(raw)
        except Exception:
            return cls._from_metadata_in_order(values)
        for name in _REQUIRED:
            if state[name] is MISSING:
                return cls._from_metadata_in_order(values)
        new = _NEW(cls)
        new.__dict__.update(state)
        return new

    @classmethod
    def _from_metadata_in_order(cls, values: Mapping[str, Any]) -> RequestFacts:
        """`from_metadata` codec by codec: the first error in field order is raised."""
        kwargs: dict[str, Any] = {}
        for c in _CODECS:
            raw = values.get(c.key)
            if raw is None:
                if c.required:
                    raise ValueError(f"request facts: {c.key!r} is missing")
                continue
            kwargs[c.name] = c.decode(raw)
        return cls(**kwargs)


_NAME_SET = frozenset(f.name for f in fields(RequestFacts))
_NEW = object.__new__


@dataclass(frozen=True, slots=True)
class Ending:
    """How a request ended, for its usage record."""

    decision: Outcome
    status_code: int
    ended_at: float  # epoch seconds
    # Whether the response streamed; None: what the request asked for.
    streamed: bool | None = None
    usage: Usage | None = None
    usage_reported: bool = False
    first_byte_at: float | None = None
    response_bytes: int = 0
    # The denying policy, or the cause of an error Envoy answered itself.
    denied_by: str | None = None
    usage_flags: tuple[str, ...] = ()
    # The provider account that answered (Envoy's upstream host), if any.
    upstream_account: str | None = None


def usage_record(
    facts: RequestFacts,
    ending: Ending,
    *,
    cost_usd: float | None = None,
    price_version: int | None = None,
    post_violations: tuple[str, ...] = (),
    metered: bool = False,
) -> UsageRecord:
    """The one place a usage record is built from a request's facts. ``metered``: the
    record as `usage.metering.metered` would return it (built once, not copied)."""
    usage = ending.usage or Usage()
    unit = usage.unit
    # Token routes get theirs from the recorder (``usage.metering``), or here: ``metered``.
    quantity = (usage.quantity or 0.0) if unit is not None else 0.0
    if metered:
        changes = metering_of(unit, quantity, facts.provider, facts.operation, usage.total_tokens)
        if changes:
            unit, quantity = changes["unit"], changes["quantity"]
    return UsageRecord(
        request_id=facts.request_id,
        started_at=datetime.fromtimestamp(facts.started_at, UTC),
        decision=ending.decision,
        status_code=ending.status_code,
        org_id=facts.org_id,
        app_id=facts.app_id,
        environment=facts.environment,
        api_key_id=facts.key_id,
        provider=facts.provider,
        operation=facts.operation,
        requested_model=facts.requested_model,
        served_model=facts.served_model,
        streamed=facts.stream if ending.streamed is None else ending.streamed,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        estimated_tokens=facts.estimated_tokens,
        usage_reported=ending.usage_reported,
        latency_ms=latency_ms(facts, ending),
        ttft_ms=(ending.first_byte_at - facts.started_at) * 1000.0
        if ending.first_byte_at is not None
        else None,
        request_bytes=facts.request_bytes,
        response_bytes=ending.response_bytes,
        cost_usd=cost_usd,
        shadow_violations=facts.shadow,
        denied_by=ending.denied_by,
        post_violations=post_violations,
        usage_flags=ending.usage_flags
        + (("quantity_estimated",) if usage.quantity_estimated else ()),
        unit=unit,
        quantity=quantity,
        price_version=price_version,
        upstream_account=ending.upstream_account,
    )


def latency_ms(facts: RequestFacts, ending: Ending) -> float:
    """The record's ``latency_ms``."""
    return (ending.ended_at - facts.started_at) * 1000.0


# --- the encoding, derived from the fields' types ----------------------------------


@dataclass(frozen=True, slots=True)
class _Codec:
    name: str
    key: str
    required: bool
    default: Any
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _int(raw: Any) -> int:
    return int(float(raw))


def _bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"request facts: expected a boolean, got {raw!r}")
    return raw


# The charges cross as one string, not a list of lists: a nested Struct costs the
# policy filter ~10 µs a charge to build (protobuf's ListValue fills recurse in Python),
# and Envoy and the access log line carry it. Each charge is
# ``<unit>,<count>,<bucket start>,<amount>,<kind>,<key>`` (the key last: it may hold
# commas), charges separated by a space, which a counter key never holds (its parts are
# percent-encoded, `counters.values.counter_key`).
_CHARGE_SEP = " "


def _charge_text(c: Charge) -> str:
    w = c.window
    return f"{w.unit.value},{w.count},{c.bucket_start},{c.amount},{c.count},{c.key}"


def _charge_encode(value: tuple[Charge, ...]) -> str | list[list[object]]:
    if any(_CHARGE_SEP in c.key or "," in c.count for c in value):
        return [c.to_list() for c in value]  # the list form, which the reader also takes
    return _CHARGE_SEP.join([_charge_text(c) for c in value])


def _charge_from_text(item: str) -> Charge:
    parts = item.split(",", 5)
    if len(parts) != 6:
        raise ValueError(f"request facts: malformed charge {item[:64]!r} in 'ch'")
    unit, count, start, amount, kind, key = parts
    try:
        return Charge(key, Window(WindowUnit(unit), int(count)), int(start), int(amount), kind)
    except ValueError as exc:
        raise ValueError(f"request facts: malformed charge {item[:64]!r} in 'ch'") from exc


def _charge_decode(raw: Any) -> tuple[Charge, ...]:
    """The charges from their string, or from the list of lists an older sidecar wrote
    (a line written before an upgrade may be read after it)."""
    if isinstance(raw, str):
        return tuple(_charge_from_text(item) for item in raw.split(_CHARGE_SEP))
    if not isinstance(raw, list):
        raise ValueError(f"request facts: 'ch' is neither a string nor a list: {raw!r:.64}")
    try:
        return tuple(Charge.from_list(list(item)) for item in raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"request facts: malformed charges in 'ch' ({exc})") from exc


# Per type: (encode, decode). Numbers cross as doubles, so ints come back as floats.
_SCALARS: dict[Any, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    str: (str, str),
    int: (int, _int),
    float: (float, float),
    bool: (bool, _bool),
    tuple[str, ...]: (list, lambda raw: tuple(str(v) for v in raw)),
    tuple[Charge, ...]: (_charge_encode, _charge_decode),
}


def _codec_for(tp: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if isinstance(tp, types.UnionType):  # X | None: None is the default, never sent
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return _codec_for(inner[0])
    if tp in _SCALARS:
        return _SCALARS[tp]
    raise TypeError(f"RequestFacts: no metadata encoding for {tp!r}")


def _codecs() -> tuple[_Codec, ...]:
    hints = typing.get_type_hints(RequestFacts)
    out = []
    for f in fields(RequestFacts):
        encode, decode = _codec_for(hints[f.name])
        required = f.default is MISSING
        out.append(_Codec(f.name, f.metadata["key"], required, f.default, encode, decode))
    keys = [c.key for c in out]
    assert len(set(keys)) == len(keys), "RequestFacts: two fields share a metadata key"
    return tuple(out)


_CODECS = _codecs()
# For `from_metadata`: each key's codec, and every field's default in field order
# (MISSING for a required field until its key is read).
_BY_KEY = {c.key: c for c in _CODECS}
_DEFAULTS: dict[str, Any] = {c.name: c.default for c in _CODECS}
_REQUIRED = tuple(c.name for c in _CODECS if c.required)
