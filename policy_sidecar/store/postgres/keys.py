"""API keys: only a sha256 hash and a short visible prefix are stored."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from policy_sidecar.identity.keys import hash_api_key
from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres._crud import UNSET, Unset
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import InvalidError, NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import ApiKey, CreatedApiKey, KeyIdentity, Page

__all__ = ["ApiKeyRepository", "new_secret"]

_KIND = "api key"
# Random characters kept in the visible prefix after "ps_<env>_": enough for an
# operator to tell keys apart, far too few to help guess one.
_VISIBLE_RANDOM = 6


def new_secret(environment: str) -> tuple[str, str]:
    """A fresh secret `ps_<env>_<43 url-safe chars>` (256 bits) and its visible prefix.

    The prefix is `ps_<env>_` plus a few random characters rather than a fixed 10
    characters, which for long environment names would show only the environment.
    """
    head = f"ps_{environment}_"
    secret = head + secrets.token_urlsafe(32)
    return secret, secret[: len(head) + _VISIBLE_RANDOM]


class ApiKeyRepository:
    """Create returns the secret exactly once; afterwards only the hash exists."""

    def __init__(self, pool: Pool, publisher: PolicyChangePublisher | None = None) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()

    async def create(
        self,
        *,
        app_id: str,
        environment: str,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> CreatedApiKey:
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidError(_KIND, "expires_at", "must be timezone-aware")
        secret, prefix = new_secret(environment)
        async with write_transaction(self._pool) as conn:
            cur = await conn.execute(
                "SELECT 1 FROM applications WHERE id = %s AND archived_at IS NULL FOR SHARE",
                (app_id,),
            )
            if await cur.fetchone() is None:
                raise NotFoundError("application", app_id)
            with translate_errors(_KIND):
                key = await _crud.fetch_one(
                    conn,
                    ApiKey,
                    "INSERT INTO api_keys (app_id, environment, name, prefix, key_hash, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
                    (app_id, environment, name, prefix, hash_api_key(secret), expires_at),
                )
        assert key is not None
        await self._changed(key, "created")
        return CreatedApiKey(key=key, secret=secret)

    async def get(self, key_id: str) -> ApiKey:
        return await self._get_by("id", key_id)

    async def get_by_hash(self, key_hash: str) -> ApiKey:
        """The sidecar's identity lookup (`hash_api_key(secret)`); check `usable_at` too."""
        return await self._get_by("key_hash", key_hash)

    async def resolve(self, key_hash: str) -> KeyIdentity | None:
        """The identity behind a key, or None when the key is unknown, revoked,
        expired or its application archived. A key of an environment whose config is
        disabled resolves with ``environment_enabled`` false (the caller is told why,
        not that the key is invalid); no config row for the environment means enabled."""
        async with self._pool.connection() as conn:
            return await _crud.fetch_one(
                conn,
                KeyIdentity,
                "SELECT k.id AS key_id, a.org_id, k.app_id, k.environment, c.default_model,"
                " k.expires_at, coalesce(c.enabled, true) AS environment_enabled"
                " FROM api_keys k JOIN applications a ON a.id = k.app_id"
                " LEFT JOIN application_configs c"
                "   ON c.app_id = k.app_id AND c.environment = k.environment"
                " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
                " AND (k.expires_at IS NULL OR k.expires_at > now())"
                " AND a.archived_at IS NULL",
                (key_hash,),
            )

    async def _get_by(self, column: str, value: str) -> ApiKey:
        query = sql.SQL("SELECT * FROM api_keys WHERE {} = %s").format(sql.Identifier(column))
        async with self._pool.connection() as conn:
            key = await _crud.fetch_one(conn, ApiKey, query, (value,))
        if key is None:
            raise NotFoundError(_KIND, value if column == "id" else "<hash>")
        return key

    async def list(
        self,
        *,
        app_id: str | None = None,
        environment: str | None = None,
        include_revoked: bool = False,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[ApiKey]:
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                ApiKey,
                kind=_KIND,
                table="api_keys",
                filters={"app_id": app_id, "environment": environment},
                extra_where=() if include_revoked else ("revoked_at IS NULL",),
                page_size=page_size,
                page_token=page_token,
            )

    async def update(
        self,
        key_id: str,
        *,
        version: int,
        name: str | Unset = UNSET,
        expires_at: datetime | Unset | None = UNSET,
    ) -> ApiKey:
        if isinstance(expires_at, datetime) and expires_at.tzinfo is None:
            raise InvalidError(_KIND, "expires_at", "must be timezone-aware")
        return await self._update(
            key_id, version, _crud.set_fields(name=name, expires_at=expires_at), "updated"
        )

    async def revoke(self, key_id: str, *, version: int) -> ApiKey:
        """Revoke now (idempotent: the first revocation time is kept)."""
        revoked = sql.SQL("coalesce(revoked_at, now())")
        return await self._update(key_id, version, {"revoked_at": revoked}, "updated")

    async def delete(self, key_id: str, *, version: int | None = None) -> None:
        async with write_transaction(self._pool) as conn:
            key = await _crud.fetch_one(
                conn, ApiKey, "SELECT * FROM api_keys WHERE id = %s FOR UPDATE", (key_id,)
            )
            await _crud.delete_versioned(
                conn, kind=_KIND, table="api_keys", key={"id": key_id}, version=version
            )
        assert key is not None
        await self._changed(key, "deleted")

    async def record_last_used(
        self, seen: Mapping[str, datetime], *, granularity: timedelta = timedelta(minutes=1)
    ) -> int:
        """Batch-update `last_used_at` from the sidecar's in-memory map {key id: time}.

        The sidecar calls this every few seconds, not per request; a row is written
        only when its stored time is older than `granularity`, so a busy key costs
        about one write a minute. Does not bump `version`. Returns rows written.
        """
        if not seen:
            return 0
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE api_keys k SET last_used_at = s.t"
                " FROM unnest(%s::text[], %s::timestamptz[]) AS s(id, t)"
                " WHERE k.id = s.id"
                " AND (k.last_used_at IS NULL OR k.last_used_at < s.t - %s)",
                (list(seen.keys()), list(seen.values()), granularity),
            )
            return cur.rowcount

    async def _update(
        self, key_id: str, version: int, changes: dict[str, Any], action: Any
    ) -> ApiKey:
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                key = await _crud.update_versioned(
                    conn,
                    ApiKey,
                    kind=_KIND,
                    table="api_keys",
                    key={"id": key_id},
                    version=version,
                    changes=changes,
                )
        await self._changed(key, action)
        return key

    async def _changed(self, key: ApiKey, action: Any) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(
                kind="api_key",
                action=action,
                id=key.id,
                app_id=key.app_id,
                version=key.version,
                key_hash=key.key_hash,
            ),
        )
