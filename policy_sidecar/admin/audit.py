"""AuditService: the audit log, read-only (it is written by the store's triggers)."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from policy_sidecar.admin.convert import page_size, timestamp, to_datetime
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import audit_pb2 as pb
from policy_sidecar.store.postgres.audit import AuditEvent, AuditFilter, AuditLog

_LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z, the last second a Timestamp allows

__all__ = ["AuditServicer", "event_message"]

Context = grpc.aio.ServicerContext[Any, Any]


def _json(row: dict[str, Any] | None) -> str:
    return "" if row is None else json.dumps(row, sort_keys=True, separators=(",", ":"))


def event_message(event: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        id=str(event.id),
        event_time=timestamp(event.event_time),
        actor=event.actor,
        method=event.method,
        object_type=event.object_type,
        object_id=event.object_id,
        action=event.action,
        before_json=_json(event.before),
        after_json=_json(event.after),
    )


def _time(
    request: pb.ListAuditEventsRequest, field: str, v: Violations
) -> timestamp_pb2.Timestamp | None:
    if not request.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(request, field)
    if not 0 <= ts.seconds <= _LAST_SECOND or not 0 <= ts.nanos < 1_000_000_000:
        v.add(field, "not a valid timestamp (1970-01-01 to 9999-12-31)")
        return None
    return ts


class AuditServicer:
    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        v = Violations()
        start, end = _time(request, "start_time", v), _time(request, "end_time", v)
        v.check()
        where = AuditFilter(
            object_type=request.object_type or None,
            object_id=request.object_id or None,
            start=to_datetime(start) if start is not None else None,
            end=to_datetime(end) if end is not None else None,
        )
        page = await self._log.list(
            where,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListAuditEventsResponse(
            events=[event_message(e) for e in page.items],
            next_page_token=page.next_page_token or "",
        )
