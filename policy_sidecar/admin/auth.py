"""Bearer-token authentication and roles for the admin API.

Tokens come from `POLICY_SIDECAR_ADMIN_TOKENS` (entries separated by commas or
newlines) and/or the file named by `POLICY_SIDECAR_ADMIN_TOKENS_FILE` (one entry a
line, `#` comments). An entry is `name:role:token`, role `admin` or `readonly`.
Tokens are compared in constant time against every configured token; only the
token's name is ever logged, and it is what the audit log records as the actor.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import grpc

from policy_sidecar.admin.metrics import AdminMetrics
from policy_sidecar.store.postgres.audit import AuditActor, acting_as

__all__ = [
    "AdminToken",
    "AuthInterceptor",
    "TokenError",
    "is_read_only",
    "parse_tokens",
]

log = logging.getLogger(__name__)

Role = Literal["admin", "readonly"]
MIN_TOKEN_LENGTH: Final = 16

# Health stays open: kubelet and load balancers probe it without credentials.
# Reflection is NOT exempt: it reveals no data, but the schema is the map of the
# attack surface, and grpcurl's -H sends the header on reflection calls anyway.
PUBLIC_PREFIXES: Final = ("/grpc.health.v1.Health/",)
READ_ONLY_SERVICES: Final = (
    "/policy_sidecar.admin.v1.UsageService/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)


class TokenError(ValueError):
    """A token entry is malformed; the message names the entry, never the token."""


@dataclass(frozen=True, slots=True)
class AdminToken:
    name: str
    role: Role
    token: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"AdminToken(name={self.name!r}, role={self.role!r})"


def parse_tokens(lines: Iterable[str], *, source: str) -> tuple[AdminToken, ...]:
    tokens: list[AdminToken] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        where = f"{source}: entry {number}"
        if len(parts) != 3:
            raise TokenError(f"{where}: expected name:role:token")
        name, role, token = (p.strip() for p in parts)
        if not name:
            raise TokenError(f"{where}: empty name")
        if role not in ("admin", "readonly"):
            raise TokenError(f"{where} ({name}): role must be admin or readonly")
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenError(f"{where} ({name}): token shorter than {MIN_TOKEN_LENGTH} characters")
        tokens.append(AdminToken(name, role, token.encode()))  # type: ignore[arg-type]
    return tuple(tokens)


def is_read_only(method: str) -> bool:
    """Get*/List* methods and the usage service: what a readonly token may call."""
    if method.startswith(READ_ONLY_SERVICES):
        return True
    name = method.rsplit("/", 1)[-1]
    return name.startswith(("Get", "List"))


def _match(tokens: Iterable[AdminToken], presented: bytes) -> AdminToken | None:
    found: AdminToken | None = None
    for token in tokens:  # no early exit: time does not depend on which token matched
        if hmac.compare_digest(token.token, presented):
            found = token
    return found


def _bearer(metadata: Any) -> bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, credential = text.strip().partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip().encode()
    return None


def _deny(handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str) -> Any:
    async def unary(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    async def streaming(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler.request_streaming or handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    return grpc.unary_unary_rpc_method_handler(unary)


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks `authorization: Bearer <token>` and the token's role before any handler."""

    def __init__(self, tokens: Iterable[AdminToken], metrics: AdminMetrics) -> None:
        self._tokens = tuple(tokens)
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        presented = _bearer(handler_call_details.invocation_metadata)
        token = _match(self._tokens, presented) if presented is not None else None
        if token is None:
            self._metrics.auth_failures.labels("unauthenticated").inc()
            return _deny(  # type: ignore[no-any-return]
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or invalid admin token (authorization: Bearer <token>)",
            )
        if token.role != "admin" and not is_read_only(method):
            self._metrics.auth_failures.labels("permission_denied").inc()
            log.warning("admin token %r (readonly) refused %s", token.name, method)
            return _deny(  # type: ignore[no-any-return]
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {token.name!r} is read-only: {method} needs an admin token",
            )
        return _attributed(handler, AuditActor(token.name, method))


def _attributed(
    handler: grpc.RpcMethodHandler[_Req, _Resp], actor: AuditActor
) -> grpc.RpcMethodHandler[_Req, _Resp]:
    """The handler, with the store's writes during the call attributed to `actor`
    (the audit log's who and what). Only unary-unary handlers write."""
    behaviour = handler.unary_unary
    if behaviour is None:
        return handler

    async def unary(request: _Req, context: Any) -> Any:
        with acting_as(actor):
            return await behaviour(request, context)  # type: ignore[misc]

    return handler._replace(unary_unary=unary)  # type: ignore[attr-defined,no-any-return]
