"""Login sessions, roles and CSRF protection for the console.

- The session is the admin token itself, in an `HttpOnly; SameSite=Strict` cookie
  (`Secure` over TLS or when configured for a TLS-terminating ingress). The console
  stores nothing else: every page calls the admin API with that token.
- The role is asked of the admin service, never assumed: at login (and after a
  restart, on the first request) the console calls `ValidatePolicy` with an empty
  request. A read-only token gets PERMISSION_DENIED from the server's interceptor
  before any handler runs; an admin token gets INVALID_ARGUMENT (nothing is stored).
- CSRF: every POST must come from the console's own origin (Origin, else Referer)
  and carry the session's CSRF token (form field `_csrf` or header `X-CSRF-Token`),
  an HMAC keyed by the session's token: only its owner can compute it (the cookie
  is HttpOnly), and every replica of the admin service agrees on it without a shared
  secret. The login form uses a double-submit cookie instead (no session yet).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

import grpc
from aiohttp import web

from policy_sidecar.admin.v1 import policies_pb2
from policy_sidecar.console.admin_client import AdminClient, ApiError

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "InvalidToken",
    "Sessions",
    "User",
    "same_origin",
]

SESSION_COOKIE: Final = "ps_console"
LOGIN_CSRF_COOKIE: Final = "ps_login_csrf"
ROLE_CACHE_SIZE: Final = 1024
CSRF_CONTEXT: Final = b"policy-sidecar console csrf v1"
Role = Literal["admin", "readonly"]


class InvalidToken(Exception):
    """The admin service did not accept the token."""


@dataclass(frozen=True, slots=True)
class User:
    token: str = ""
    role: Role = "readonly"
    csrf: str = ""

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    def __init__(self, client: AdminClient, *, secure_cookie: bool = False) -> None:
        self._client = client
        self._roles: OrderedDict[bytes, Role] = OrderedDict()
        self.secure_cookie = secure_cookie

    def csrf_token(self, token: str) -> str:
        return hmac.new(_digest(token), CSRF_CONTEXT, hashlib.sha256).hexdigest()

    async def role_of(self, token: str) -> Role:
        key = _digest(token)
        cached = self._roles.get(key)
        if cached is not None:
            self._roles.move_to_end(key)
            return cached
        try:
            await self._client.call(
                self._client.policies.ValidatePolicy, policies_pb2.ValidatePolicyRequest(), token
            )
            role: Role = "admin"
        except ApiError as exc:
            if exc.code == grpc.StatusCode.PERMISSION_DENIED:
                role = "readonly"
            elif exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                role = "admin"
            elif exc.code == grpc.StatusCode.UNAUTHENTICATED:
                raise InvalidToken("the admin service refused this token") from exc
            else:
                raise
        self._roles[key] = role
        while len(self._roles) > ROLE_CACHE_SIZE:
            self._roles.popitem(last=False)
        return role

    async def user(self, request: web.Request) -> User | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        try:
            role = await self.role_of(token)
        except InvalidToken:
            return None
        return User(token, role, self.csrf_token(token))

    def forget(self, token: str) -> None:
        self._roles.pop(_digest(token), None)

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, name: str, value: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie or request.secure,
            path="/",
        )

    def check_csrf(self, user: User, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(user.csrf, presented)


def same_origin(request: web.Request) -> bool:
    """The POST's Origin (else Referer) names this host."""
    source = request.headers.get("Origin") or request.headers.get("Referer") or ""
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.host


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
