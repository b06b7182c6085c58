"""Applications and their per-environment configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres._crud import UNSET, Unset
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import InvalidError, NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import Application, Page
from policy_sidecar.store.validation import string_labels

__all__ = ["ApplicationRepository"]

_KIND = "application"


def _labels(labels: Mapping[str, str]) -> Jsonb:
    try:
        return Jsonb(string_labels(labels))
    except ValueError as exc:
        raise InvalidError(_KIND, "labels", str(exc)) from exc


class ApplicationRepository:
    """Applications are archived, never deleted: usage rows keep pointing at them."""

    def __init__(self, pool: Pool, publisher: PolicyChangePublisher | None = None) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()

    async def create(
        self,
        *,
        org_id: str,
        name: str,
        description: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Application:
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                app = await _crud.fetch_one(
                    conn,
                    Application,
                    "INSERT INTO applications (org_id, name, description, labels)"
                    " VALUES (%s, %s, %s, %s) RETURNING *",
                    (org_id, name, description, _labels(labels or {})),
                )
        assert app is not None
        await self._changed(app, "created")
        return app

    async def get(self, app_id: str) -> Application:
        async with self._pool.connection() as conn:
            app = await _crud.fetch_one(
                conn, Application, "SELECT * FROM applications WHERE id = %s", (app_id,)
            )
        if app is None:
            raise NotFoundError(_KIND, app_id)
        return app

    async def list(
        self,
        *,
        org_id: str | None = None,
        include_archived: bool = False,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Application]:
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                Application,
                kind=_KIND,
                table="applications",
                filters={"org_id": org_id},
                extra_where=() if include_archived else ("archived_at IS NULL",),
                page_size=page_size,
                page_token=page_token,
            )

    async def update(
        self,
        app_id: str,
        *,
        version: int,
        name: str | Unset = UNSET,
        description: str | Unset = UNSET,
        labels: Mapping[str, str] | Unset = UNSET,
    ) -> Application:
        changes: dict[str, Any] = _crud.set_fields(name=name, description=description)
        if not isinstance(labels, Unset):
            changes["labels"] = _labels(labels)
        return await self._update(app_id, version, changes, "updated")

    async def archive(self, app_id: str, *, version: int) -> Application:
        """Archive (soft-delete): hidden from lists, its keys stop resolving."""
        archived_at = sql.SQL("coalesce(archived_at, now())")
        return await self._update(app_id, version, {"archived_at": archived_at}, "deleted")

    async def _update(
        self, app_id: str, version: int, changes: dict[str, Any], action: Any
    ) -> Application:
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                app = await _crud.update_versioned(
                    conn,
                    Application,
                    kind=_KIND,
                    table="applications",
                    key={"id": app_id},
                    version=version,
                    changes=changes,
                )
        await self._changed(app, action)
        return app

    async def _changed(self, app: Application, action: Any) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(
                kind="application",
                action=action,
                id=app.id,
                org_id=app.org_id,
                app_id=app.id,
                version=app.version,
            ),
        )
