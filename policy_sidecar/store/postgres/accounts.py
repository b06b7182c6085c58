"""Provider accounts: where model deployments' traffic goes and with which credential.

The name is immutable (it is the Envoy cluster name and what models refer to); an
account still referred to by a model cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql

from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres._crud import UNSET, Unset
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import InUseError, NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import Page, ProviderAccountRow

__all__ = ["AccountRepository"]

_KIND = "provider_account"
_TABLE = "provider_accounts"


class AccountRepository:
    def __init__(self, pool: Pool, publisher: PolicyChangePublisher | None = None) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()

    async def create(
        self,
        *,
        name: str,
        provider: str,
        base_host: str,
        credential_ref: str,
        port: int = 443,
        ca_file: str | None = None,
        address: str | None = None,
        tokens_per_minute: int | None = None,
        requests_per_minute: int | None = None,
        enabled: bool = True,
    ) -> ProviderAccountRow:
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                row = await _crud.fetch_one(
                    conn,
                    ProviderAccountRow,
                    "INSERT INTO provider_accounts (name, provider, base_host, port,"
                    " credential_ref, ca_file, address, tokens_per_minute,"
                    " requests_per_minute, enabled)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                    (
                        name,
                        provider,
                        base_host,
                        port,
                        credential_ref,
                        ca_file,
                        address,
                        tokens_per_minute,
                        requests_per_minute,
                        enabled,
                    ),
                )
        assert row is not None
        await self._changed(row.id, "created", row.version)
        return row

    async def get(self, account_id: str) -> ProviderAccountRow:
        return await self._get_by("id", account_id)

    async def get_by_name(self, name: str) -> ProviderAccountRow:
        return await self._get_by("name", name)

    async def _get_by(self, column: str, value: str) -> ProviderAccountRow:
        query = sql.SQL("SELECT * FROM provider_accounts WHERE {} = %s").format(
            sql.Identifier(column)
        )
        async with self._pool.connection() as conn:
            row = await _crud.fetch_one(conn, ProviderAccountRow, query, (value,))
        if row is None:
            raise NotFoundError(_KIND, value)
        return row

    async def exists(self, name: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM provider_accounts WHERE name = %s", (name,))
            return await cur.fetchone() is not None

    async def list(
        self,
        *,
        provider: str | None = None,
        enabled: bool | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[ProviderAccountRow]:
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                ProviderAccountRow,
                kind=_KIND,
                table=_TABLE,
                filters={"provider": provider, "enabled": enabled},
                page_size=page_size,
                page_token=page_token,
            )

    async def update(
        self,
        account_id: str,
        *,
        version: int,
        provider: str | Unset = UNSET,
        base_host: str | Unset = UNSET,
        port: int | Unset = UNSET,
        credential_ref: str | Unset = UNSET,
        ca_file: str | Unset | None = UNSET,
        address: str | Unset | None = UNSET,
        tokens_per_minute: int | Unset | None = UNSET,
        requests_per_minute: int | Unset | None = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> ProviderAccountRow:
        changes: dict[str, Any] = _crud.set_fields(
            provider=provider,
            base_host=base_host,
            port=port,
            credential_ref=credential_ref,
            ca_file=ca_file,
            address=address,
            tokens_per_minute=tokens_per_minute,
            requests_per_minute=requests_per_minute,
            enabled=enabled,
        )
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                row = await _crud.update_versioned(
                    conn,
                    ProviderAccountRow,
                    kind=_KIND,
                    table=_TABLE,
                    key={"id": account_id},
                    version=version,
                    changes=changes,
                )
        await self._changed(row.id, "updated", row.version)
        return row

    async def delete(self, account_id: str, *, version: int | None = None) -> None:
        try:
            async with write_transaction(self._pool) as conn:
                await _crud.delete_versioned(
                    conn, kind=_KIND, table=_TABLE, key={"id": account_id}, version=version
                )
        except pg_errors.ForeignKeyViolation as exc:
            raise InUseError(
                _KIND, account_id, "model deployments or fallback groups still refer to it"
            ) from exc
        await self._changed(account_id, "deleted", None)

    async def _changed(self, account_id: str, action: Any, version: int | None) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(kind="provider_account", action=action, id=account_id, version=version),
        )
