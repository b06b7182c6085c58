"""The audit log: who changed which configuration row, when, from what to what.

Rows of `audit_events` are written by triggers (sql/0008_audit.sql) in the same
transaction as the change. The triggers learn who is writing from two
transaction-local settings that `write_transaction` sets from `audit_context`, a
context variable the admin server sets per call (token name, gRPC method). Repository
writes outside an admin call are audited with actor "system"; the sidecar's own
`last_used_at` batches do not go through `write_transaction` and are not audited.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from policy_sidecar.store.postgres._crud import check_page_size
from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import Page

__all__ = [
    "OBJECT_TYPES",
    "AuditActor",
    "AuditEvent",
    "AuditFilter",
    "AuditLog",
    "acting_as",
    "audit_context",
    "write_transaction",
]

_KIND = "audit query"
SYSTEM_ACTOR: Final = "system"

#: The `object_type` values the triggers write (one per audited table).
OBJECT_TYPES: Final = frozenset(
    {
        "application",
        "application_config",
        "api_key",
        "model",
        "policy",
        "provider_account",
        "fallback_group",
    }
)


@dataclass(frozen=True, slots=True)
class AuditActor:
    """Who is writing: the admin token's name, and the gRPC method being served."""

    name: str
    method: str = ""


audit_context: contextvars.ContextVar[AuditActor | None] = contextvars.ContextVar(
    "policy_sidecar_audit_actor", default=None
)


@contextmanager
def acting_as(actor: AuditActor) -> Iterator[None]:
    """Attribute the writes made inside the block to `actor`."""
    reset = audit_context.set(actor)
    try:
        yield
    finally:
        audit_context.reset(reset)


@asynccontextmanager
async def write_transaction(pool: Pool) -> AsyncIterator[AsyncConnection[TupleRow]]:
    """A pooled connection inside a transaction that the audit triggers attribute to
    the current actor (see module docstring)."""
    actor = audit_context.get() or AuditActor(SYSTEM_ACTOR)
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('policy_sidecar.audit_actor', %s, true),"
            " set_config('policy_sidecar.audit_method', %s, true)",
            (actor.name, actor.method),
        )
        yield conn


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    event_time: datetime
    actor: str
    method: str
    object_type: str
    object_id: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Equality filters and a half-open time range [start, end); None means any."""

    object_type: str | None = None
    object_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def parse_page_token(token: str) -> int:
    """A page token is the id of the last event of the previous page (decimal)."""
    if not token.isascii() or not token.isdigit() or len(token) > 19 or int(token) < 1:
        raise InvalidError(_KIND, "page_token", "not a token from this list")
    return int(token)


class AuditLog:
    """Reads of `audit_events`, newest first, keyset-paginated on the id."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list(
        self,
        where: AuditFilter | None = None,
        *,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[AuditEvent]:
        check_page_size(_KIND, page_size)
        f = where or AuditFilter()
        if f.object_type is not None and f.object_type not in OBJECT_TYPES:
            raise InvalidError(
                _KIND, "object_type", f"must be one of {', '.join(sorted(OBJECT_TYPES))}"
            )
        if f.object_id is not None and f.object_type is None:
            raise InvalidError(_KIND, "object_id", "needs object_type")
        if f.start is not None and f.end is not None and f.start >= f.end:
            raise InvalidError(_KIND, "end_time", "must be after start_time")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("object_type", f.object_type),
            ("object_id", f.object_id),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if f.start is not None:
            clauses.append("event_time >= %s")
            params.append(f.start)
        if f.end is not None:
            clauses.append("event_time < %s")
            params.append(f.end)
        if page_token:
            clauses.append("id < %s")
            params.append(parse_page_token(page_token))
        query = (
            "SELECT id, event_time, actor, method, object_type, object_id, action, before, after"
            " FROM audit_events"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + " ORDER BY id DESC LIMIT %s"
        )
        params.append(page_size + 1)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(AuditEvent))
            await cur.execute(query.encode(), params)
            rows = await cur.fetchall()
        items = tuple(rows[:page_size])
        return Page(items, str(items[-1].id) if len(rows) > page_size else None)
