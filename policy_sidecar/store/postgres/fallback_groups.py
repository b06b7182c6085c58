"""Fallback groups: accounts of one provider tried in order (one Envoy cluster each).

The name is immutable (it is the Envoy cluster name and what models route to); a group
a model still routes to (``models.upstream_cluster``) cannot be deleted. Whether the
accounts exist and agree is the admin API's check (the array has no foreign key); an
account still in a group cannot be deleted (a trigger, sql/0010_fallback_groups.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import InUseError, NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import FallbackGroupRow, Page

__all__ = ["FallbackGroupRepository"]

_KIND = "fallback_group"
_TABLE = "fallback_groups"


class FallbackGroupRepository:
    def __init__(self, pool: Pool, publisher: PolicyChangePublisher | None = None) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()

    async def create(self, *, name: str, accounts: Sequence[str]) -> FallbackGroupRow:
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                row = await _crud.fetch_one(
                    conn,
                    FallbackGroupRow,
                    "INSERT INTO fallback_groups (name, accounts) VALUES (%s, %s) RETURNING *",
                    (name, list(accounts)),
                )
        assert row is not None
        await self._changed(row.id, "created", row.version)
        return row

    async def get(self, group_id: str) -> FallbackGroupRow:
        return await self._get_by("id", group_id)

    async def get_by_name(self, name: str) -> FallbackGroupRow:
        return await self._get_by("name", name)

    async def _get_by(self, column: str, value: str) -> FallbackGroupRow:
        query = sql.SQL("SELECT * FROM fallback_groups WHERE {} = %s").format(
            sql.Identifier(column)
        )
        async with self._pool.connection() as conn:
            row = await _crud.fetch_one(conn, FallbackGroupRow, query, (value,))
        if row is None:
            raise NotFoundError(_KIND, value)
        return row

    async def exists(self, name: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM fallback_groups WHERE name = %s", (name,))
            return await cur.fetchone() is not None

    async def with_account(self, account: str) -> list[str]:
        """The names of the groups that include ``account``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name FROM fallback_groups WHERE %s = ANY (accounts) ORDER BY name",
                (account,),
            )
            return [str(r[0]) for r in await cur.fetchall()]

    async def list(
        self, *, page_size: int = 100, page_token: str | None = None
    ) -> Page[FallbackGroupRow]:
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                FallbackGroupRow,
                kind=_KIND,
                table=_TABLE,
                filters={},
                page_size=page_size,
                page_token=page_token,
            )

    async def update(
        self, group_id: str, *, version: int, accounts: Sequence[str] | None = None
    ) -> FallbackGroupRow:
        changes: dict[str, Any] = {} if accounts is None else {"accounts": list(accounts)}
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                row = await _crud.update_versioned(
                    conn,
                    FallbackGroupRow,
                    kind=_KIND,
                    table=_TABLE,
                    key={"id": group_id},
                    version=version,
                    changes=changes,
                )
        await self._changed(row.id, "updated", row.version)
        return row

    async def delete(self, group_id: str, *, version: int | None = None) -> None:
        async with write_transaction(self._pool) as conn:
            group = await _crud.fetch_one(
                conn,
                FallbackGroupRow,
                "SELECT * FROM fallback_groups WHERE id = %s FOR UPDATE",
                (group_id,),
            )
            if group is not None:
                cur = await conn.execute(
                    "SELECT name FROM models WHERE upstream_cluster = %s AND account IS NULL"
                    " ORDER BY name LIMIT 3",
                    (group.name,),
                )
                models = [str(r[0]) for r in await cur.fetchall()]
                if models:
                    raise InUseError(
                        _KIND, group_id, f"model deployments route to it: {', '.join(models)}"
                    )
            await _crud.delete_versioned(
                conn, kind=_KIND, table=_TABLE, key={"id": group_id}, version=version
            )
        await self._changed(group_id, "deleted", None)

    async def _changed(self, group_id: str, action: Any, version: int | None) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(kind="fallback_group", action=action, id=group_id, version=version),
        )
