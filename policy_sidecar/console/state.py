"""Application keys shared by the console's views."""

from __future__ import annotations

from contextvars import ContextVar

from aiohttp import web

from policy_sidecar.console.admin_client import AdminClient
from policy_sidecar.console.session import Sessions, User

__all__ = ["CLIENT_KEY", "CURRENT_USER", "SESSIONS_KEY", "current_user"]

CLIENT_KEY = web.AppKey("admin_client", AdminClient)
SESSIONS_KEY = web.AppKey("sessions", Sessions)
# aiohttp runs each request in its own task, so a context variable is per request.
CURRENT_USER: ContextVar[User | None] = ContextVar("console_user", default=None)


def current_user(request: web.Request) -> User:
    user = CURRENT_USER.get()
    if user is None:
        raise web.HTTPSeeOther("/login")
    return user
