"""Per-environment application configs: one row per (application, environment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres._crud import UNSET, Unset
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import InvalidError, NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import ApplicationConfig, Page
from policy_sidecar.store.validation import ConfigValidator, json_object

__all__ = ["ApplicationConfigRepository"]

_KIND = "application config"


class ApplicationConfigRepository:
    """`settings` is validated by `validator(environment, settings)` before every write."""

    def __init__(
        self,
        pool: Pool,
        publisher: PolicyChangePublisher | None = None,
        validator: ConfigValidator = json_object,
    ) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()
        self._validate = validator

    def _settings(self, environment: str, settings: Mapping[str, Any]) -> Jsonb:
        try:
            return Jsonb(self._validate(environment, settings))
        except ValueError as exc:
            raise InvalidError(_KIND, "settings", str(exc)) from exc

    async def create(
        self,
        *,
        app_id: str,
        environment: str,
        enabled: bool = True,
        default_model: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> ApplicationConfig:
        doc = self._settings(environment, settings or {})
        async with write_transaction(self._pool) as conn:
            # Lock the application row so it cannot be archived under us.
            cur = await conn.execute(
                "SELECT 1 FROM applications WHERE id = %s AND archived_at IS NULL FOR SHARE",
                (app_id,),
            )
            if await cur.fetchone() is None:
                raise NotFoundError("application", app_id)
            with translate_errors(_KIND):
                config = await _crud.fetch_one(
                    conn,
                    ApplicationConfig,
                    "INSERT INTO application_configs"
                    " (app_id, environment, enabled, default_model, settings)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING *",
                    (app_id, environment, enabled, default_model, doc),
                )
        assert config is not None
        await self._changed(config, "created")
        return config

    async def get(self, app_id: str, environment: str) -> ApplicationConfig:
        async with self._pool.connection() as conn:
            config = await _crud.fetch_one(
                conn,
                ApplicationConfig,
                "SELECT * FROM application_configs WHERE app_id = %s AND environment = %s",
                (app_id, environment),
            )
        if config is None:
            raise NotFoundError(_KIND, f"{app_id}/{environment}")
        return config

    async def list(
        self, *, app_id: str, page_size: int = 100, page_token: str | None = None
    ) -> Page[ApplicationConfig]:
        """Configs of one application ordered by environment; the token is an environment."""
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                ApplicationConfig,
                kind=_KIND,
                table="application_configs",
                filters={"app_id": app_id},
                cursor_column="environment",
                page_size=page_size,
                page_token=page_token,
            )

    async def update(
        self,
        app_id: str,
        environment: str,
        *,
        version: int,
        enabled: bool | Unset = UNSET,
        default_model: str | Unset | None = UNSET,
        settings: Mapping[str, Any] | Unset = UNSET,
    ) -> ApplicationConfig:
        changes = _crud.set_fields(enabled=enabled, default_model=default_model)
        if not isinstance(settings, Unset):
            changes["settings"] = self._settings(environment, settings)
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                config = await _crud.update_versioned(
                    conn,
                    ApplicationConfig,
                    kind=_KIND,
                    table="application_configs",
                    key={"app_id": app_id, "environment": environment},
                    version=version,
                    changes=changes,
                )
        await self._changed(config, "updated")
        return config

    async def delete(self, app_id: str, environment: str, *, version: int | None = None) -> None:
        async with write_transaction(self._pool) as conn:
            await _crud.delete_versioned(
                conn,
                kind=_KIND,
                table="application_configs",
                key={"app_id": app_id, "environment": environment},
                version=version,
            )
        await _crud.publish(
            self._publisher,
            PolicyChange(
                kind="application_config",
                action="deleted",
                id=f"{app_id}/{environment}",
                app_id=app_id,
            ),
        )

    async def _changed(self, config: ApplicationConfig, action: Any) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(
                kind="application_config",
                action=action,
                id=f"{config.app_id}/{config.environment}",
                app_id=config.app_id,
                version=config.version,
            ),
        )
