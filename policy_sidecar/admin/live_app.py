"""Tells an archived application apart from a missing one (FAILED_PRECONDITION vs
NOT_FOUND) when a key or config cannot be created for it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from policy_sidecar.admin.errors import FailedPrecondition
from policy_sidecar.store.postgres import ApplicationRepository, NotFoundError

__all__ = ["for_live_app"]

T = TypeVar("T")


async def for_live_app(apps: ApplicationRepository, app_id: str, write: Awaitable[T]) -> T:
    """Run `write`; if it fails because the application is not live, say why."""
    try:
        return await write
    except NotFoundError as exc:
        if exc.kind != "application":
            raise
        app = await apps.get(app_id)  # raises NotFoundError when it really is missing
        if app.archived:
            raise FailedPrecondition(
                "ARCHIVED", f"application {app_id}", "is archived; restore is not supported"
            ) from exc
        raise
