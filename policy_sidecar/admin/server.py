"""Wiring of the admin gRPC server: repositories, servicers, auth, health,
reflection, metrics, TLS. `serve_admin` is what `policy-sidecar admin` runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from policy_sidecar.admin.accounts import AccountServicer
from policy_sidecar.admin.api_keys import ApiKeyServicer
from policy_sidecar.admin.applications import ApplicationServicer
from policy_sidecar.admin.audit import AuditServicer
from policy_sidecar.admin.auth import AdminToken, AuthInterceptor
from policy_sidecar.admin.configs import ApplicationConfigServicer
from policy_sidecar.admin.deployments import ModelServicer
from policy_sidecar.admin.fallback_groups import FallbackGroupServicer
from policy_sidecar.admin.handlers import generic_handler
from policy_sidecar.admin.metrics import AdminMetrics
from policy_sidecar.admin.policies import PolicyServicer
from policy_sidecar.admin.policy_check import config_validator
from policy_sidecar.admin.settings import AdminSettings
from policy_sidecar.admin.usage import UsageServicer
from policy_sidecar.admin.v1 import (
    accounts_pb2,
    api_keys_pb2,
    applications_pb2,
    audit_pb2,
    configs_pb2,
    fallback_groups_pb2,
    models_pb2,
    policies_pb2,
    usage_pb2,
)
from policy_sidecar.store.invalidation import NoopPublisher, PolicyChangePublisher
from policy_sidecar.store.postgres import (
    AccountRepository,
    ApiKeyRepository,
    ApplicationConfigRepository,
    ApplicationRepository,
    ModelRepository,
    PolicyRepository,
    Pool,
    UsageQueries,
    open_pool,
)
from policy_sidecar.store.postgres.audit import AuditLog
from policy_sidecar.store.postgres.fallback_groups import FallbackGroupRepository
from policy_sidecar.store.postgres.price_book import PriceBookRepository
from policy_sidecar.store.postgres.usage_coverage import UsageCoverage
from policy_sidecar.store.postgres.usage_recent import RecentRequests

__all__ = ["SERVICE_NAMES", "AdminServer", "Companion", "serve_admin", "start_admin_server"]

log = logging.getLogger(__name__)

_SERVICES = (
    applications_pb2.DESCRIPTOR.services_by_name["ApplicationService"],
    configs_pb2.DESCRIPTOR.services_by_name["ApplicationConfigService"],
    api_keys_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
    models_pb2.DESCRIPTOR.services_by_name["ModelService"],
    policies_pb2.DESCRIPTOR.services_by_name["PolicyService"],
    usage_pb2.DESCRIPTOR.services_by_name["UsageService"],
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"],
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
    fallback_groups_pb2.DESCRIPTOR.services_by_name["FallbackGroupService"],
)
SERVICE_NAMES = tuple(s.full_name for s in _SERVICES)


@dataclass(frozen=True, slots=True)
class AdminServer:
    server: grpc.aio.Server
    port: int
    metrics: AdminMetrics


async def start_admin_server(
    *,
    pool: Pool,
    tokens: Iterable[AdminToken],
    publisher: PolicyChangePublisher | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: tuple[bytes, bytes] | None = None,
    metrics: AdminMetrics | None = None,
    credentials_dir: Path | None = None,
) -> AdminServer:
    """Build and start the server; the caller stops it (`server.stop(grace)`)."""
    metrics = metrics or AdminMetrics.create()
    pub = publisher or NoopPublisher()
    apps = ApplicationRepository(pool, pub)
    accounts = AccountRepository(pool, pub)
    models = ModelRepository(pool, pub)
    groups = FallbackGroupRepository(pool, pub)
    servicers: tuple[object, ...] = (
        ApplicationServicer(apps),
        ApplicationConfigServicer(ApplicationConfigRepository(pool, pub), apps),
        ApiKeyServicer(ApiKeyRepository(pool, pub), apps),
        ModelServicer(models, accounts, PriceBookRepository(pool, models), groups),
        PolicyServicer(
            PolicyRepository(pool, pub, validator=config_validator), ModelRepository(pool, pub)
        ),
        UsageServicer(UsageQueries(pool), RecentRequests(pool), UsageCoverage(pool)),
        AccountServicer(accounts, credentials_dir, groups),
        AuditServicer(AuditLog(pool)),
        FallbackGroupServicer(groups, accounts),
    )
    server = grpc.aio.server(interceptors=[AuthInterceptor(tokens, metrics)])
    server.add_generic_rpc_handlers(
        [generic_handler(d, s, metrics) for d, s in zip(_SERVICES, servicers, strict=True)]
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        cert, key = tls
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return AdminServer(server, bound, metrics)


# Something run beside the admin server in its event loop (the web console): started
# with the running server, it returns its stop function.
Companion = Callable[[AdminServer], Awaitable[Callable[[], Awaitable[None]]]]


async def serve_admin(settings: AdminSettings, companions: Sequence[Companion] = ()) -> None:
    """Run until SIGINT/SIGTERM: Postgres pool, optional Redis publisher, metrics."""
    from policy_sidecar.redis_clients import open_redis
    from policy_sidecar.store.redis_publisher import RedisPolicyChangePublisher

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await open_pool(settings.database_url, name="policy-sidecar-admin")
    metrics = AdminMetrics.create()
    redis = open_redis(settings.redis_url) if settings.redis_url else None
    publisher = (
        RedisPolicyChangePublisher(
            redis, on_result=lambda result: metrics.invalidations.labels(result).inc()
        )
        if redis is not None
        else None
    )
    if publisher is None:
        log.warning("POLICY_SIDECAR_REDIS_URL unset: changes reach sidecars only by cache TTL")
    httpd = None
    if settings.metrics_port >= 0:
        httpd, _thread = start_http_server(
            settings.metrics_port, addr=settings.host, registry=metrics.registry
        )
    tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
    admin = await start_admin_server(
        pool=pool,
        tokens=settings.tokens,
        publisher=publisher,
        host=settings.host,
        port=settings.port,
        tls=tls,
        metrics=metrics,
        credentials_dir=settings.credentials_dir,
    )
    metrics_text = f", metrics on :{httpd.server_port}/metrics" if httpd is not None else ""
    print(
        f"admin service listening on {settings.host}:{admin.port}"
        f" ({'TLS' if tls else 'plaintext'}){metrics_text}",
        flush=True,
    )
    stops = []
    try:
        for companion in companions:
            stops.append(await companion(admin))
        await stop.wait()
    finally:
        for stop_companion in reversed(stops):
            await stop_companion()
        await admin.server.stop(5)
        if httpd is not None:
            httpd.shutdown()
        if publisher is not None:
            await publisher.close()
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
        await pool.close()
