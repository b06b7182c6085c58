"""The console's aiohttp application and its start/stop.

`start_console` runs in the admin process's event loop, beside the grpc.aio server,
and reaches the admin API over a loopback gRPC channel (`admin_target`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from importlib import resources

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from policy_sidecar.console import (
    apps_views,
    audit_views,
    auth_views,
    coverage_views,
    models_views,
    policy_views,
    usage_views,
)
from policy_sidecar.console.admin_client import AdminClient, ApiError
from policy_sidecar.console.render import ENV_KEY, create_environment, render
from policy_sidecar.console.session import Sessions, same_origin
from policy_sidecar.console.state import CLIENT_KEY, CURRENT_USER, SESSIONS_KEY

__all__ = ["ConsoleServer", "build_app", "start_console"]

PUBLIC = ("/login", "/healthz", "/favicon.ico")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


@web.middleware
async def _headers(request: web.Request, handler: auth_views.Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _to_login(request: web.Request) -> web.StreamResponse:
    if request.headers.get("HX-Request"):
        return web.Response(status=401, headers={"HX-Redirect": "/login"})
    raise web.HTTPSeeOther("/login")


@web.middleware
async def _guard(request: web.Request, handler: auth_views.Handler) -> web.StreamResponse:
    # Keep-alive connections serve several requests in one task: reset first.
    CURRENT_USER.set(None)
    if request.method not in ("GET", "HEAD") and not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if request.path.startswith("/static/") or request.path in PUBLIC:
        return await handler(request)
    sessions = request.app[SESSIONS_KEY]
    user = await sessions.user(request)
    if user is None:
        return _to_login(request)
    if request.method not in ("GET", "HEAD"):
        presented = request.headers.get("X-CSRF-Token", "")
        if not presented and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            value = (await request.post()).get("_csrf", "")
            presented = value if isinstance(value, str) else ""
        if not sessions.check_csrf(user, presented):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
    CURRENT_USER.set(user)
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.code == grpc.StatusCode.UNAUTHENTICATED:
            sessions.forget(user.token)
            return _to_login(request)
        status = {
            grpc.StatusCode.PERMISSION_DENIED: 403,
            grpc.StatusCode.NOT_FOUND: 404,
            grpc.StatusCode.INVALID_ARGUMENT: 400,
            grpc.StatusCode.FAILED_PRECONDITION: 409,
            grpc.StatusCode.ABORTED: 409,
            grpc.StatusCode.ALREADY_EXISTS: 409,
        }.get(exc.code, 502)
        return render(request, "error.html", status=status, error=exc)


async def _healthz(request: web.Request) -> web.Response:
    """Ready when the admin service it calls answers SERVING (the pod's readiness)."""
    stub = health_pb2_grpc.HealthStub(request.app[CLIENT_KEY].channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
    except grpc.aio.AioRpcError as exc:
        return web.Response(status=503, text=f"admin service: {exc.code().name}\n")
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return web.Response(status=503, text="admin service: not serving\n")
    return web.Response(text="ok\n")


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=404)


def build_app(client: AdminClient, *, secure_cookie: bool = False) -> web.Application:
    app = web.Application(middlewares=[_headers, _guard], client_max_size=256 * 1024)
    app[CLIENT_KEY] = client
    app[SESSIONS_KEY] = Sessions(client, secure_cookie=secure_cookie)
    app[ENV_KEY] = create_environment()
    static = resources.files("policy_sidecar.console") / "static"
    app.router.add_static("/static/", str(static), append_version=False)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/favicon.ico", _no_icon)
    for module in (
        auth_views,
        apps_views,
        models_views,
        policy_views,
        usage_views,
        coverage_views,
        audit_views,
    ):
        module.add_routes(app.router)
    return app


@dataclass(frozen=True, slots=True)
class ConsoleServer:
    runner: web.AppRunner
    port: int
    channel: grpc.aio.Channel

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.channel.close()


async def start_console(
    *,
    admin_target: str,
    host: str = "127.0.0.1",
    port: int = 0,
    admin_credentials: grpc.ChannelCredentials | None = None,
    ssl_context: ssl.SSLContext | None = None,
    secure_cookie: bool = False,
) -> ConsoleServer:
    """Serve the console on host:port (0: any free port) until `stop()`."""
    channel = (
        grpc.aio.secure_channel(admin_target, admin_credentials)
        if admin_credentials is not None
        else grpc.aio.insecure_channel(admin_target)
    )
    app = build_app(AdminClient(channel), secure_cookie=secure_cookie or ssl_context is not None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return ConsoleServer(runner, bound, channel)
