"""Wiring: builds the sidecar's components from settings and runs worker processes.

This is the one place where concrete components are chosen and connected.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    ProcessingRequest,
    ProcessingResponse,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import CatalogPriceBook
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.envoy.access_log import log_path
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.h2grpc import MAX_MESSAGE_LIMIT, H2GrpcServer, Method
from policy_sidecar.extproc.health import CHECK_PATH, Health
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.extproc.server import PROCESS_PATH, ExternalProcessor
from policy_sidecar.extproc.services import Services, UnknownPaths, Unpriced, UsageRecorder
from policy_sidecar.identity.resolver import IdentityResolver
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox, PenaltyBox, RedisPenaltyBox
from policy_sidecar.observability.logs import configure as configure_logs
from policy_sidecar.observability.merge import WorkerMetricsCollector
from policy_sidecar.observability.metrics import (
    MeteredRecorder,
    observe_counter_store_error,
    observe_skipped_line,
    set_detailed_labels,
)
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import PolicySource, StaticPolicySource
from policy_sidecar.providers.registry import default_registry
from policy_sidecar.store.standalone import (
    ConfigError,
    StandaloneConfig,
    StandaloneIdentityResolver,
    load_standalone_config,
)
from policy_sidecar.tokens import EncodingLoadError, TokenEstimator, load_estimator
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import JsonlFileSink, UsageSink
from policy_sidecar.usage.spool import Spool, SpoolLockedError
from policy_sidecar.usage.tailer import FileTailer
from policy_sidecar.wiring.account_clusters import AccountClusterWriter
from policy_sidecar.wiring.affinity import allowed_cpus, pin_current_thread, worker_cpus
from policy_sidecar.wiring.production import Production, open_production
from policy_sidecar.wiring.settings import Settings, SettingsError

log = logging.getLogger("policy_sidecar")


class StartupError(Exception):
    """The sidecar cannot start; the message says why."""


def load_config(settings: Settings) -> StandaloneConfig:
    if not settings.config_path:
        raise StartupError("no configuration: set POLICY_SIDECAR_CONFIG or pass --config")
    try:
        return load_standalone_config(settings.config_path)
    except ConfigError as exc:
        raise StartupError(str(exc)) from exc


def build_estimator(settings: Settings) -> TokenEstimator:
    try:
        return load_estimator(settings.tiktoken_dir)
    except EncodingLoadError as exc:
        raise StartupError(f"tokenizer data: {exc}") from exc


def build_counters(settings: Settings) -> tuple[CounterStore, PenaltyBox]:
    """Redis when configured (exact across replicas), else in-process counters."""
    if settings.redis_url:
        store = RedisCounterStore.from_url(settings.redis_url, client_name="policy-sidecar")
        return store, RedisPenaltyBox(store.client)
    if len(settings.ports) > 1:
        log.warning(
            "rate and token limits are counted per worker process (no Redis configured): "
            "with %d workers each limit is effectively %d times higher",
            len(settings.ports),
            len(settings.ports),
        )
    return InMemoryCounterStore(), InMemoryPenaltyBox()


def build_recorder(
    settings: Settings, sink: UsageSink, *, port: int, models: Mapping[str, ModelDeployment]
) -> BatchingRecorder:
    """The usage recorder for one worker. Its spool is `spool_dir/<port>`: a spool has
    exactly one owner, and a restarted worker on the same port replays its own."""
    try:
        spool = Spool(Path(settings.spool_dir) / str(port))
    except (SpoolLockedError, OSError) as exc:
        raise StartupError(f"usage spool: {exc}") from exc
    return BatchingRecorder(
        sink,
        spool=spool,
        pricing=Pricing(CatalogPriceBook(models)),  # reads the live catalogue
        max_batch=settings.usage_batch_size,
        max_delay=settings.usage_batch_delay,
        max_queue=settings.usage_queue_size,
        grace_seconds=settings.grace_seconds,
    )


@dataclass(frozen=True, slots=True)
class Source:
    """What the two modes differ in: where identities, policies and models come from."""

    identities: IdentityResolver
    policies: PolicySource
    models: Mapping[str, ModelDeployment]
    unknown_paths: UnknownPaths
    # Provider accounts by name: their quotas apply to the models on them.
    accounts: Mapping[str, ProviderAccount]
    unpriced: Unpriced = "deny"


def standalone_source(settings: Settings, config: StandaloneConfig) -> Source:
    return Source(
        identities=StandaloneIdentityResolver(config.keys),
        policies=StaticPolicySource(PolicyEngine(config.policies, cel_engine=settings.cel_engine)),
        models=config.models,
        unknown_paths=config.unknown_paths,
        accounts=config.accounts,
        unpriced=config.unpriced,
    )


def production_source(settings: Settings, production: Production) -> Source:
    return Source(
        identities=production.identities,
        policies=production.policies,
        models=production.models,
        unknown_paths=settings.unknown_paths,
        accounts=production.accounts,
        unpriced=settings.unpriced,
    )


def build_services(
    settings: Settings,
    source: Source,
    recorder: UsageRecorder,
    estimator: TokenEstimator,
    counters: CounterStore,
    penalties: PenaltyBox,
    *,
    worker: str | None = None,
) -> Services:
    """The one construction of the stream processors' services, for either mode."""
    return Services(
        identities=source.identities,
        policies=source.policies,
        enforcer=Enforcer(
            counters,
            penalties,
            store_errors=observe_counter_store_error,
            accounts=source.accounts,
        ),
        providers=default_registry(),
        estimator=estimator,
        recorder=recorder,
        models=source.models,
        prices=CatalogPriceBook(source.models),
        unknown_paths=source.unknown_paths,
        unpriced=source.unpriced,
        inject_stream_usage=settings.inject_stream_usage,
        worker=worker,
    )


def build_tailer(
    settings: Settings, services: Services, recorder: BatchingRecorder, *, port: int
) -> FileTailer:
    """The reader of this worker's access log file: usage records from Envoy's lines.
    Its cursor lives beside the worker's spool, which it shares the lifetime of."""
    directory = Path(settings.access_log_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"access log directory {directory}: {exc}") from exc
    consumer = LogConsumer(Completer(services), recorder)
    admin = settings.envoy_admin_url
    return FileTailer(
        log_path(directory, port),
        Path(settings.spool_dir) / f"access-{port}.cursor",
        consumer,
        poll_seconds=settings.access_log_batch_ms / 1000,
        on_skipped=observe_skipped_line,
        rotate_bytes=settings.access_log_rotate_bytes,
        reopen=functools.partial(reopen_envoy_logs, admin) if admin else None,
    )


async def reopen_envoy_logs(admin_url: str) -> None:
    """Envoy's ``POST /reopen_logs``: it reopens every access log file by its path."""
    url = admin_url.rstrip("/") + "/reopen_logs"
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


async def serve_worker(
    settings: Settings, port: int, *, on_ready: Callable[[int], None] | None = None
) -> None:
    """Runs one ext_proc server until SIGTERM or SIGINT, then drains and flushes."""
    estimator = build_estimator(settings)
    counters, penalties = build_counters(settings)
    production: Production | None = None
    sink: UsageSink
    if settings.database_url:
        try:
            production = await open_production(
                settings.database_url,
                settings.redis_url,
                cel_engine=settings.cel_engine,
                pool_size=settings.database_pool_size,
                policy_cache_seconds=settings.policy_cache_seconds,
                identity_cache_seconds=settings.identity_cache_seconds,
            )
        except Exception as exc:
            raise StartupError(f"cannot open the production stores: {exc}") from exc
        sink = production.usage_sink
        source = production_source(settings, production)
    else:
        source = standalone_source(settings, load_config(settings))
        sink = JsonlFileSink(settings.usage_file)
    if settings.cds_path and port == settings.ports[0]:
        writer = AccountClusterWriter(settings.cds_path, settings.credentials_dir)
        if production is not None:
            production.on_accounts = writer.write
            await writer.write(production.accounts.values(), production.groups.groups)
        else:
            config = load_config(settings)
            await writer.write(config.accounts.values(), config.fallback_groups)
    recorder = build_recorder(settings, sink, port=port, models=source.models)
    services = build_services(
        settings,
        source,
        MeteredRecorder(recorder),
        estimator,
        counters,
        penalties,
        worker=str(port),
    )
    tailer = build_tailer(settings, services, recorder, port=port)
    processor = ExternalProcessor(
        services,
        max_in_flight=settings.max_in_flight,
        max_queue=settings.max_queue_ms / 1000,
        worker=str(port),
    )
    server = await _start_server(settings, port, processor)
    recorder.start()
    tailing = asyncio.create_task(tailer.run(), name="access-log")
    mode = "production" if production is not None else "standalone"
    log.info(
        "ext_proc worker (%s mode, %s server) listening on %s:%d",
        mode,
        settings.grpc_server,
        settings.host,
        server.port,
    )
    if on_ready is not None:
        on_ready(server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info(
        "worker on port %d stopping: draining streams for %.0fs",
        server.port,
        settings.grace_seconds,
    )
    # One grace period for both: streams finish, then the usage queue and spool are
    # flushed in what is left of it; the rest stays in the spool for the next start.
    deadline = loop.time() + settings.grace_seconds
    await server.stop(settings.grace_seconds)
    await services.tasks.drain()
    # Lines not handed over yet stay in the file: the next start reads them.
    tailer.stop()
    await tailing
    await recorder.close(max(deadline - loop.time(), 0.0))
    await counters.aclose()
    estimator.close()
    if production is not None:
        await production.close()
    log.info("worker on port %d stopped; %d usage records written", server.port, recorder.written)


@dataclass(frozen=True, slots=True)
class _Server:
    """The ext_proc port's server, whichever implementation serves it."""

    port: int
    stop: Callable[[float], Awaitable[None]]


async def _start_server(settings: Settings, port: int, processor: ExternalProcessor) -> _Server:
    """Listens on ``port`` with ExternalProcessor.Process and grpc.health.v1 Check; the
    health turns NOT_SERVING when stopping starts."""
    if settings.grpc_server == "grpcio":
        return await _start_grpcio(settings, port, processor)
    health_state = Health()
    if settings.max_message_bytes > MAX_MESSAGE_LIMIT:
        raise StartupError(
            f"POLICY_SIDECAR_MAX_MESSAGE_BYTES: at most {MAX_MESSAGE_LIMIT} with the h2 server"
        )
    server = H2GrpcServer(
        {
            PROCESS_PATH: Method(
                functools.partial(processor.Process, None),
                ProcessingRequest.FromString,
                ProcessingResponse.SerializeToString,
            ),
            CHECK_PATH: health_state.method(),
        },
        max_message_bytes=settings.max_message_bytes,
    )
    try:
        bound = await server.start(settings.host, port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{port}: {exc}") from exc
    health_state.serving = True

    async def stop(grace: float) -> None:
        health_state.serving = False
        await server.stop(grace)

    return _Server(bound, stop)


async def _start_grpcio(settings: Settings, port: int, processor: ExternalProcessor) -> _Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_ExternalProcessorServicer_to_server(processor, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{settings.host}:{port}")
    if bound == 0:
        raise StartupError(f"cannot listen on {settings.host}:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(grace: float) -> None:
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace)

    return _Server(bound, stop)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _worker_entry(
    settings: Settings,
    port: int,
    metrics_report: multiprocessing.connection.Connection | None = None,
    cpu: int | None = None,
) -> None:
    # First, before any thread starts: the threads started later inherit the CPU.
    pin_current_thread(cpu)
    configure_logs(settings.log_level, worker_port=port)
    if cpu is not None:
        log.info("worker on port %d pinned to CPU %d", port, cpu)
    set_detailed_labels(settings.metrics_detailed_labels)
    if metrics_report is not None:
        # This worker's in-memory registry, on a loopback port the supervisor scrapes.
        httpd, _ = start_http_server(0, addr="127.0.0.1")
        metrics_report.send(httpd.server_port)
        metrics_report.close()
    _install_uvloop()
    try:
        asyncio.run(serve_worker(settings, port))
    except StartupError as exc:
        log.error("%s", exc)
        sys.exit(2)


def run_sidecar(settings: Settings) -> int:
    """Validates configuration, then runs one worker process per port. Returns the exit code."""
    try:
        # Fail once, here, with a clear message, before any worker starts.
        if not settings.database_url:
            load_config(settings)
        build_estimator(settings).close()
    except (StartupError, SettingsError) as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return 2
    multi = len(settings.ports) > 1
    try:
        worker_ports = _serve_metrics(settings.metrics_port, merged=multi)
    except OSError as exc:
        print(
            f"policy-sidecar: cannot serve metrics on port {settings.metrics_port}: {exc}",
            file=sys.stderr,
        )
        return 2
    cpus = worker_cpus(len(settings.ports), settings.pin_workers, allowed_cpus())
    if len(settings.ports) == 1:
        _worker_entry(settings, settings.ports[0], cpu=cpus[0])
        return 0
    # spawn, not fork: no gRPC state may cross into a child.
    ctx = multiprocessing.get_context("spawn")
    workers = []
    reports = []
    for port, cpu in zip(settings.ports, cpus, strict=True):
        report = None
        if worker_ports is not None:
            receive, report = ctx.Pipe(duplex=False)
            worker_ports.add(receive)
            reports.append(report)
        workers.append(
            ctx.Process(
                target=_worker_entry, args=(settings, port, report, cpu), name=f"worker-{port}"
            )
        )
    for worker in workers:
        worker.start()
    for report in reports:
        report.close()  # the worker has its own end: a worker that dies reads as EOF

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate() if signum == signal.SIGTERM else _interrupt(worker.pid)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # One worker dying takes the others down: a half-running sidecar would look healthy
    # to some of Envoy's endpoints only. The orchestrator restarts the whole process.
    exit_code = 0
    pending = {w.sentinel: w for w in workers}
    while pending:
        for sentinel in multiprocessing.connection.wait(list(pending)):
            worker = pending.pop(sentinel)  # type: ignore[arg-type]
            worker.join()
            if worker.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT):
                log.error("%s exited with %s; stopping the others", worker.name, worker.exitcode)
                exit_code = 1
                forward(signal.SIGTERM, None)
    return exit_code


class _WorkerPorts:
    """The metrics ports the workers reported, read from their pipes at scrape time."""

    def __init__(self) -> None:
        self._pending: list[multiprocessing.connection.Connection] = []
        self._ports: list[int] = []
        self._lock = threading.Lock()

    def add(self, connection: multiprocessing.connection.Connection) -> None:
        with self._lock:
            self._pending.append(connection)

    def __call__(self) -> list[int]:
        with self._lock:
            for connection in list(self._pending):
                try:
                    if not connection.poll():
                        continue
                    self._ports.append(int(connection.recv()))
                except (EOFError, OSError):
                    pass  # the worker died before listening: nothing to scrape
                self._pending.remove(connection)
                connection.close()
            return list(self._ports)


def _serve_metrics(port: int, *, merged: bool) -> _WorkerPorts | None:
    """``/metrics``: with several workers, theirs merged at scrape time (``merge``);
    with one, the process's own registry. Returns where workers report their ports."""
    if port == 0:
        return None
    if not merged:
        start_http_server(port)
        return None
    ports = _WorkerPorts()
    registry = CollectorRegistry()
    registry.register(WorkerMetricsCollector(ports))
    start_http_server(port, registry=registry)
    return ports


def _interrupt(pid: int) -> None:
    os.kill(pid, signal.SIGINT)
