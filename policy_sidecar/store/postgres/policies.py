"""Policies: the one place policy writes go through, so every committed change is
published for cache invalidation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres._crud import UNSET, Unset
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import InvalidError, NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import Page, Policy, PolicyMode
from policy_sidecar.store.validation import ConfigValidator, json_object

__all__ = ["PolicyRepository"]

_KIND = "policy"


class PolicyRepository:
    """`config` is validated by `validator(type, config)` before it is stored; the
    policy engine passes its typed validator (CEL compiled and type-checked there).
    `type` is fixed at creation: a different type is a different policy."""

    def __init__(
        self,
        pool: Pool,
        publisher: PolicyChangePublisher | None = None,
        validator: ConfigValidator = json_object,
    ) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()
        self._validate = validator

    def _config(self, policy_type: str, config: Mapping[str, Any]) -> Jsonb:
        try:
            return Jsonb(self._validate(policy_type, config))
        except ValueError as exc:
            raise InvalidError(_KIND, "config", str(exc)) from exc

    async def create(
        self,
        *,
        name: str,
        type: str,
        config: Mapping[str, Any],
        org_id: str | None = None,
        app_id: str | None = None,
        environment: str | None = None,
        model_pattern: str | None = None,
        mode: PolicyMode = "enforce",
        priority: int = 0,
        enabled: bool = True,
    ) -> Policy:
        doc = self._config(type, config)
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                policy = await _crud.fetch_one(
                    conn,
                    Policy,
                    "INSERT INTO policies (name, type, org_id, app_id, environment,"
                    " model_pattern, mode, priority, enabled, config)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                    (
                        name,
                        type,
                        org_id,
                        app_id,
                        environment,
                        model_pattern,
                        mode,
                        priority,
                        enabled,
                        doc,
                    ),
                )
        assert policy is not None
        await self._changed(policy, "created")
        return policy

    async def get(self, policy_id: str) -> Policy:
        async with self._pool.connection() as conn:
            policy = await _crud.fetch_one(
                conn, Policy, "SELECT * FROM policies WHERE id = %s", (policy_id,)
            )
        if policy is None:
            raise NotFoundError(_KIND, policy_id)
        return policy

    async def list(
        self,
        *,
        org_id: str | None = None,
        app_id: str | None = None,
        environment: str | None = None,
        type: str | None = None,
        enabled: bool | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Policy]:
        """Filters match the stored scope exactly (org_id="a" lists policies scoped to
        org "a", not global ones); see `applicable` for the evaluation view."""
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                Policy,
                kind=_KIND,
                table="policies",
                filters={
                    "org_id": org_id,
                    "app_id": app_id,
                    "environment": environment,
                    "type": type,
                    "enabled": enabled,
                },
                page_size=page_size,
                page_token=page_token,
            )

    async def applicable(
        self, *, org_id: str | None, app_id: str | None, environment: str | None
    ) -> tuple[Policy, ...]:
        """Enabled policies whose scope covers the caller, lowest priority number first,
        then id (the engine's order). Model patterns are matched by the engine."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Policy))
            await cur.execute(
                "SELECT * FROM policies WHERE enabled"
                " AND (org_id IS NULL OR org_id = %s)"
                " AND (app_id IS NULL OR app_id = %s)"
                " AND (environment IS NULL OR environment = %s)"
                " ORDER BY priority, id",
                (org_id, app_id, environment),
            )
            return tuple(await cur.fetchall())

    async def update(
        self,
        policy_id: str,
        *,
        version: int,
        name: str | Unset = UNSET,
        config: Mapping[str, Any] | Unset = UNSET,
        org_id: str | Unset | None = UNSET,
        app_id: str | Unset | None = UNSET,
        environment: str | Unset | None = UNSET,
        model_pattern: str | Unset | None = UNSET,
        mode: PolicyMode | Unset = UNSET,
        priority: int | Unset = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> Policy:
        changes: dict[str, Any] = _crud.set_fields(
            name=name,
            org_id=org_id,
            app_id=app_id,
            environment=environment,
            model_pattern=model_pattern,
            mode=mode,
            priority=priority,
            enabled=enabled,
        )
        async with write_transaction(self._pool) as conn:
            if not isinstance(config, Unset):
                current = await _crud.fetch_one(
                    conn, Policy, "SELECT * FROM policies WHERE id = %s", (policy_id,)
                )
                if current is None:
                    raise NotFoundError(_KIND, policy_id)
                changes["config"] = self._config(current.type, config)
            with translate_errors(_KIND):
                policy = await _crud.update_versioned(
                    conn,
                    Policy,
                    kind=_KIND,
                    table="policies",
                    key={"id": policy_id},
                    version=version,
                    changes=changes,
                )
        await self._changed(policy, "updated")
        return policy

    async def delete(self, policy_id: str, *, version: int | None = None) -> None:
        async with write_transaction(self._pool) as conn:
            policy = await _crud.fetch_one(
                conn, Policy, "SELECT * FROM policies WHERE id = %s FOR UPDATE", (policy_id,)
            )
            await _crud.delete_versioned(
                conn, kind=_KIND, table="policies", key={"id": policy_id}, version=version
            )
        assert policy is not None
        await self._changed(policy, "deleted")

    async def _changed(self, policy: Policy, action: Any) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(
                kind="policy",
                action=action,
                id=policy.id,
                org_id=policy.org_id,
                app_id=policy.app_id,
                version=policy.version,
            ),
        )
