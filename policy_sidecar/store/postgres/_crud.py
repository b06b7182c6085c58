"""Shared SQL helpers for the configuration repositories (private)."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Final, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from policy_sidecar.store.invalidation import PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres.errors import (
    InvalidError,
    NotFoundError,
    VersionConflictError,
)
from policy_sidecar.store.records import Page

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 500


class _Unset(Enum):
    UNSET = "UNSET"


#: Default of update arguments: "leave this column as it is" (None means SQL NULL).
UNSET: Final = _Unset.UNSET
Unset = _Unset


#: The transaction's time, for timestamp columns set by an update.
NOW: Final = sql.SQL("now()")


def set_fields(**fields: Any) -> dict[str, Any]:
    """The subset of `fields` that were given (not UNSET)."""
    return {k: v for k, v in fields.items() if v is not UNSET}


def check_page_size(kind: str, page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidError(kind, "page_size", f"must be between 1 and {MAX_PAGE_SIZE}")


def page_token_for(kind: str, cursor: str) -> str:
    """An opaque token for the page after ``cursor`` in a list of ``kind``."""
    return base64.urlsafe_b64encode(f"{kind}|{cursor}".encode()).decode()


def cursor_of(kind: str, token: str) -> str:
    """The cursor in a token from ``page_token_for(kind, …)``; anything else is
    ``InvalidError`` naming ``page_token`` (a guessed id never silently pages)."""
    try:
        found, sep, cursor = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    except (ValueError, binascii.Error) as exc:
        raise InvalidError(kind, "page_token", "not a token from this list") from exc
    if not sep or found != kind or not cursor:
        raise InvalidError(kind, "page_token", "not a token from this list")
    return cursor


async def fetch_one(
    conn: AsyncConnection[Any],
    row_type: type[T],
    query: sql.SQL | sql.Composed | str,
    params: Sequence[Any],
) -> T | None:
    async with conn.cursor(row_factory=class_row(row_type)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def list_page(
    conn: AsyncConnection[Any],
    row_type: type[T],
    *,
    kind: str,
    table: str,
    filters: Mapping[str, Any],
    extra_where: Sequence[str] = (),
    cursor_column: str = "id",
    page_size: int,
    page_token: str | None,
) -> Page[T]:
    """Rows matching `filters` (None values ignored), ordered by `cursor_column`."""
    check_page_size(kind, page_size)
    where: list[sql.Composable] = [sql.SQL(w) for w in extra_where]
    params: list[Any] = []
    for column, value in filters.items():
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if page_token is not None:
        where.append(sql.SQL("{} > %s").format(sql.Identifier(cursor_column)))
        params.append(cursor_of(kind, page_token))
    query = sql.SQL("SELECT * FROM {} {} ORDER BY {} LIMIT %s").format(
        sql.Identifier(table),
        sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        sql.Identifier(cursor_column),
    )
    params.append(page_size + 1)
    async with conn.cursor(row_factory=class_row(row_type)) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    more = len(rows) > page_size
    items = tuple(rows[:page_size])
    token = page_token_for(kind, str(getattr(items[-1], cursor_column))) if more else None
    return Page(items, token)


async def update_versioned(
    conn: AsyncConnection[Any],
    row_type: type[T],
    *,
    kind: str,
    table: str,
    key: Mapping[str, Any],
    version: int,
    changes: Mapping[str, Any],
) -> T:
    """Apply `changes` if the row is still at `version`; bump version and updated_at.

    An empty `changes` still bumps the version, so a caller can "touch" a row.
    """
    # A value that is itself SQL (e.g. NOW) is inlined; anything else is a parameter.
    assignments = [
        sql.SQL("{} = {}").format(
            sql.Identifier(column), value if isinstance(value, sql.Composable) else sql.SQL("%s")
        )
        for column, value in changes.items()
    ] + [sql.SQL("version = version + 1"), sql.SQL("updated_at = now()")]
    key_sql = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(column)) for column in key
    )
    query = sql.SQL("UPDATE {} SET {} WHERE {} AND version = %s RETURNING *").format(
        sql.Identifier(table), sql.SQL(", ").join(assignments), key_sql
    )
    values = [v for v in changes.values() if not isinstance(v, sql.Composable)]
    params = [*values, *key.values(), version]
    row = await fetch_one(conn, row_type, query, params)
    if row is not None:
        return row
    current = await conn.execute(
        sql.SQL("SELECT version FROM {} WHERE {}").format(sql.Identifier(table), key_sql),
        list(key.values()),
    )
    found = await current.fetchone()
    key_text = "/".join(str(v) for v in key.values())
    if found is None:
        raise NotFoundError(kind, key_text)
    raise VersionConflictError(kind, key_text, version, int(found[0]))


async def delete_versioned(
    conn: AsyncConnection[Any],
    *,
    kind: str,
    table: str,
    key: Mapping[str, Any],
    version: int | None,
) -> None:
    """Delete the row; with a `version`, only if it is still at that version."""
    key_sql = sql.SQL(" AND ").join(
        sql.SQL("{} = %s").format(sql.Identifier(column)) for column in key
    )
    cur = await conn.execute(
        sql.SQL("DELETE FROM {} WHERE {} RETURNING version").format(sql.Identifier(table), key_sql)
        if version is None
        else sql.SQL("DELETE FROM {} WHERE {} AND version = %s RETURNING version").format(
            sql.Identifier(table), key_sql
        ),
        [*key.values()] if version is None else [*key.values(), version],
    )
    if await cur.fetchone() is not None:
        return
    found = await (
        await conn.execute(
            sql.SQL("SELECT version FROM {} WHERE {}").format(sql.Identifier(table), key_sql),
            list(key.values()),
        )
    ).fetchone()
    key_text = "/".join(str(v) for v in key.values())
    if found is None:
        raise NotFoundError(kind, key_text)
    raise VersionConflictError(kind, key_text, version or 0, int(found[0]))


async def publish(publisher: PolicyChangePublisher, change: PolicyChange) -> None:
    """Publish after commit; a failure is logged, not raised (the write is durable and
    caches expire by TTL), so an outage of the bus does not fail admin writes."""
    try:
        await publisher.publish(change)
    except Exception:
        log.exception("failed to publish %s %s %s", change.kind, change.action, change.id)
