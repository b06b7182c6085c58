"""The hot path in one run: Envoy alone, a trivial Python ext_proc, and the sidecar.

    PYTHONPATH=. python bench/hot_path.py --profile 15   # full run (~10 min on 2 cores)
    PYTHONPATH=. python bench/hot_path.py --quick        # short run (~3 min), a smoke check

Side by side, on the same machine, in one run (``--rounds`` rounds, medians):

- ``envoy``: Envoy alone, the product's rendered config with every ext_proc (and Lua)
  filter and any access log removed;
- ``trivial``: the same with those filters replaced by one ext_proc filter
  (request headers, buffered request body, response headers, streamed response body) to
  ``bench/trivial_extproc.py``, which answers CONTINUE and does nothing else (the
  reference of the ratios); ``trivial-pinned``: the same with each of its processes
  pinned to a CPU, as the sidecar's workers pin themselves on a machine with as many
  CPUs as workers (``POLICY_SIDECAR_PIN_WORKERS``), shown beside it;
- ``memory``, ``redis``, ``production``: the sidecar exactly as shipped (config rendered
  by the project's own renderer, processes started by its launcher), standalone with
  in-process counters, standalone with Redis counters, and production mode (Postgres +
  Redis). All five policy types apply to every request and none denies; usage recorded.
- ``litellm`` (optional: ``pip install -e '.[bench]'``): LiteLLM's proxy, one worker,
  with rpm/tpm limits, in front of the same upstream.

Bisection rows (only when named in ``--modes``): ``lua``, Envoy alone plus the Lua
capture filter and the access log (no ext_proc); ``memory-nolua``, the sidecar in
memory mode with the Lua capture filter removed. ``--only-streams`` skips the JSON
loads (wrk) and measures only the streams, with ``--streams`` at c=1 (twice as many at
c=8).

Upstream: one Envoy ``direct_response`` serving a realistic chat completion (never the
bottleneck; it reads the whole request before answering, so the gateway keeps its
upstream connections, as with a real provider: plain figures before 2026-11-30's
"Envoy-side cost per request" in BENCHMARKS.md had a new connection per request) and, for requests carrying ``x-fake-chunk-delay``, the package's fake
provider streaming 200 chunks 2 ms apart. ``--upstream tls-account``: the chain as
shipped to a real provider, in every row (LiteLLM's skipped): one provider account
(``bench-account``, openai) whose cluster speaks TLS to the upstream Envoy (a
throwaway CA and certificate for ``api.openai.com`` made at run time) with the key
injected by Envoy's credential injector from a key file in a temporary credentials
directory; the sidecar rows reach it by the model's route, Envoy alone and the
trivial row by their default route pointed at it. That upstream answers only
requests carrying the injected key (401 otherwise: the errors column); each row is
checked once (the fake provider sees the key, the account cluster made a TLS
handshake) and the account cluster's TLS handshakes, requests and retries are
printed at the end. Load: wrk (``apt-get install wrk``) and an
aiohttp client for the streams. CPU from /proc (sidecar: supervisor and workers; Envoy:
its process). Per-worker counts: Envoy's per-endpoint ``rq_total`` of the ext_proc cluster
(each round prints the busiest worker's share of the c=16 and of the c=1 load).
Every gateway Envoy also writes a timing access log (Envoy's own clock per request,
``TIMING``): the ``E.TTFB+`` columns are the added time to the first response byte by
that clock, steadier than the client's ``TTFT+`` on a busy machine (the sidecar rows'
Envoy is restarted with the rendered config plus that log).

Prints the table, the ratios against the trivial ext_proc, and writes ``--json``.
With ``--profile`` it also records ``py-spy record --native`` of one production worker
under wrk load and prints the top frames (py-spy from the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import yaml
from psycopg.conninfo import make_conninfo

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.cli.launcher import (
    ACCESS_LOG_FLUSH_MS,
    Process,
    Stack,
    envoy_binary,
    free_port,
    new_stack,
    wait_tcp,
)
from policy_sidecar.envoy.guard import decided_guard
from policy_sidecar.envoy.upstreams import secret_file_text
from policy_sidecar.fakeprovider.app import RECEIVED_PATH
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.providers import Route, Usage

HERE = Path(__file__).parent
BASE_DSN = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "ps-bench-key-0123456789abcdef"
CHUNK_DELAY = "0.002"
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a terse assistant. " * 8},
        {"role": "user", "content": "Summarise the benefits of an ext_proc sidecar. " * 14},
    ],
    "max_tokens": 64,
}
# Five policy types, none denying: allowlist, size, CEL pre-check, two counters.
POLICIES: list[tuple[str, str, dict[str, Any]]] = [
    ("models", "model_allowlist", {"models": ["gpt-4o*"]}),
    ("size", "request_size", {"max_bytes": 1048576}),
    ("cel", "custom_cel", {"pre_check_expression": "estimated_tokens < 100000"}),
    ("rpm", "rate_limit", {"requests": 100000000, "window": "1m"}),
    ("tpd", "token_limit", {"limit": 100000000000, "window": "1d"}),
]
EXT_PROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
GUARD = str(decided_guard()["name"])  # the RBAC filter refusing undecided requests
MODES = ("envoy", "trivial", "trivial-pinned", "memory", "redis", "production", "litellm")
SIDECAR_MODES = ("memory", "redis", "production", "memory-nolua")
BISECT_MODES = ("lua", "memory-nolua")
TOP = 20
# What a stream request carries upstream: the fake provider's pacing, and no gzip (a
# compressed stream would reach the client in one piece at the end).
STREAM_HEADERS = {"x-fake-chunk-delay": CHUNK_DELAY, "accept-encoding": "identity"}
# --upstream tls-account: one provider account, its key injected by Envoy.
UPSTREAMS = ("plain", "tls-account")
ACCOUNT = "bench-account"
ACCOUNT_HOST = "api.openai.com"  # SNI, the certificate's name and `host`
ACCOUNT_KEY = "sk-bench-account-0123456789abcdef"


# Tags a request for the timing log (what kind of request, which round).
KIND_HEADER = "x-bench-kind"
# Envoy's own clock for each request (µs), from a timing access log added to every row:
# where a request's time goes inside the gateway Envoy, free of the client's scheduling.
TIMING = {
    "kind": "%REQ(X-BENCH-KIND)%",
    # first request byte in -> first byte sent upstream: the request path (ext_proc)
    "req": "%COMMON_DURATION(DS_RX_BEG:US_TX_BEG:us)%",
    # first byte sent upstream -> first response byte from upstream: the provider
    "up": "%COMMON_DURATION(US_TX_BEG:US_RX_BEG:us)%",
    # first response byte from upstream -> first byte sent to the client: response filters
    "relay": "%COMMON_DURATION(US_RX_BEG:DS_TX_BEG:us)%",
    # first request byte in -> first response byte out: the gateway's time to first byte
    "ttfb": "%COMMON_DURATION(DS_RX_BEG:DS_TX_BEG:us)%",
    "total": "%COMMON_DURATION(DS_RX_BEG:DS_TX_END:us)%",
}
TIMING_FIELDS = ("req", "up", "relay", "ttfb")


# --------------------------------------------------------------------------- processes


# The trivial ext_proc's processing mode: four messages for a JSON request.
TRIVIAL_MODE = {
    "request_header_mode": "SEND",
    "request_body_mode": "BUFFERED",
    "request_trailer_mode": "SKIP",
    "response_header_mode": "SEND",
    "response_body_mode": "STREAMED",
    "response_trailer_mode": "SKIP",
}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes and all their descendants."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        for p in [pid, *descendants(pid)]:
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def descendants(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids] + [g for k in kids for g in descendants(int(k))]


def wait_ready(proc: Process, admin_port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited:\n{proc.log_tail()}")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{admin_port}/ready"
            with urllib.request.urlopen(url, timeout=0.5) as r:
                if r.status == 200:
                    return
        time.sleep(0.05)
    raise SystemExit(f"{proc.name} not ready:\n{proc.log_tail()}")


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # answering
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout}s")


def start_envoy_config(stack: Stack, name: str, config: dict[str, Any], admin_port: int) -> Process:
    if name == "envoy":  # the gateway (not the upstream's): Envoy's clock per request
        add_timing_log(config, stack.workdir / "timing.log")
    path = stack.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [envoy_binary(), "-c", str(path), "--concurrency", "1", "-l", "warning"]
    # As the launcher runs the product's Envoy: each access log line written at once
    # (Envoy's defaults hold lines back, and the sidecar would read them in batches).
    argv += [
        "--file-flush-min-size-kb",
        "0",
        "--file-flush-interval-msec",
        str(ACCESS_LOG_FLUSH_MS),
    ]
    proc = stack.start_process(name, [*argv, "--base-id", str(free_port())])
    wait_ready(proc, admin_port)
    return proc


# --------------------------------------------------------------------------- Envoy configs


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, and the upstream's certificate for ``ACCOUNT_HOST`` it signed."""

    ca: Path
    cert: Path
    key: Path


def make_tls(workdir: Path) -> TlsFiles:
    import trustme  # the dev extra, as the e2e tests make theirs

    ca = trustme.CA()
    leaf = ca.issue_cert(ACCOUNT_HOST)
    files = TlsFiles(
        workdir / "ca.pem", workdir / "upstream-cert.pem", workdir / "upstream-key.pem"
    )
    ca.cert_pem.write_to_path(str(files.ca))
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


def upstream_config(
    port: int, admin_port: int, fake_port: int, tls: TlsFiles | None = None
) -> dict[str, Any]:
    """Static chat completion, or (with x-fake-chunk-delay) the paced fake provider.
    With ``tls``: over TLS only, and only for requests carrying the account's key."""
    usage = Usage(prompt_tokens=240, completion_tokens=64, total_tokens=304)
    body = build_response(Route("openai", "chat"), BODY, usage).body.decode()
    keyed = [{"name": "authorization", "string_match": {"exact": f"Bearer {ACCOUNT_KEY}"}}]
    required = keyed if tls is not None else []
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "s",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {
                                "prefix": "/",
                                "headers": [
                                    {"name": "x-fake-chunk-delay", "present_match": True},
                                    *required,
                                ],
                            },
                            "route": {"cluster": "fake", "timeout": "60s"},
                        },
                        {
                            "match": {"prefix": "/", "headers": required},
                            "direct_response": {"status": 200, "body": {"inline_string": body}},
                            "response_headers_to_add": [
                                {"header": {"key": "content-type", "value": "application/json"}}
                            ],
                        },
                        {  # (with tls) the account's key did not arrive
                            "match": {"prefix": "/"},
                            "direct_response": {
                                "status": 401,
                                "body": {"inline_string": "no injected account key"},
                            },
                        },
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    # The whole request read before the direct_response (plain or TLS): an answer sent
    # before the body arrived makes Envoy close the connection (a new connection, and
    # with TLS a handshake, for every request; a real provider reuses them).
    hcm["http_filters"].insert(
        0,
        {
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": 1048576,
            },
        },
    )
    if tls is not None:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": str(tls.cert)},
                            "private_key": {"filename": str(tls.key)},
                        }
                    ]
                },
            },
        }
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "upstream",
                    "address": address,
                    "filter_chains": [chain],
                }
            ],
            "clusters": [
                {
                    "name": "fake",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "fake",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": fake_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def connection_managers(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in config.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                hcm = network_filter.get("typed_config", {})
                if "http_filters" in hcm:
                    yield hcm


def http_filter_lists(config: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    for hcm in connection_managers(config):
        yield hcm["http_filters"]


def add_timing_log(config: dict[str, Any], path: Path) -> None:
    """One more access log: Envoy's own clock for each request (``TIMING``)."""
    for hcm in connection_managers(config):
        hcm.setdefault("access_log", []).append(
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": str(path),
                    "log_format": {"json_format": TIMING},
                },
            }
        )


def timings(target: Target, kind: str) -> dict[str, float]:
    """Medians (µs) of Envoy's timing fields over the target's requests of this kind."""
    if target.stack is None:
        return {}
    path = target.stack.workdir / "timing.log"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == kind]
    out: dict[str, float] = {}
    for f in TIMING_FIELDS:
        values = [float(r[f]) for r in rows if isinstance(r.get(f), (int, float))]
        if values:
            out[f] = statistics.median(values)
    return out


def drop_access_logs(config: dict[str, Any]) -> None:
    """The baselines write no access log: if the product records usage from one, that
    is gateway work, not Envoy's."""
    for hcm in connection_managers(config):
        hcm.pop("access_log", None)


def is_gateway_filter(http_filter: dict[str, Any]) -> bool:
    """The product's filters: ext_proc, the Lua capture, and the guard after the policy
    filter (without the policy filter it would refuse every request: 400)."""
    kind = str(http_filter.get("typed_config", {}).get("@type", ""))
    return kind == EXT_PROC or ".lua." in kind or http_filter.get("name") == GUARD


def ext_proc_cluster(config: dict[str, Any]) -> str:
    for filters in http_filter_lists(config):
        for f in filters:
            if f.get("typed_config", {}).get("@type") == EXT_PROC:
                return str(f["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"])
    raise SystemExit("the rendered Envoy config has no ext_proc filter")


def is_lua(http_filter: dict[str, Any]) -> bool:
    return ".lua." in str(http_filter.get("typed_config", {}).get("@type", ""))


def lua_only(config: dict[str, Any]) -> dict[str, Any]:
    """Envoy alone plus the Lua capture and the access log (bisection row ``lua``)."""
    for filters in http_filter_lists(config):
        filters[:] = [f for f in filters if not is_gateway_filter(f) or is_lua(f)]
    return config


def without_lua(config: dict[str, Any]) -> None:
    """The product's chain without the Lua capture (bisection row ``memory-nolua``)."""
    for filters in http_filter_lists(config):
        filters[:] = [f for f in filters if not is_lua(f)]


def without_gateway(config: dict[str, Any]) -> dict[str, Any]:
    """Envoy alone: every ext_proc and Lua filter removed, the rest as shipped."""
    for filters in http_filter_lists(config):
        filters[:] = [f for f in filters if not is_gateway_filter(f)]
    drop_access_logs(config)
    return config


def default_route_to_account(config: dict[str, Any]) -> None:
    """Envoy alone and the trivial row name no model route (the sidecar does): their
    default routes go to the account's cluster instead of the plain ``upstream``."""
    for hcm in connection_managers(config):
        for host in hcm["route_config"]["virtual_hosts"]:
            for route in host["routes"]:
                if route.get("route", {}).get("cluster") == "upstream":
                    route["route"]["cluster"] = ACCOUNT


def with_trivial(config: dict[str, Any]) -> dict[str, Any]:
    """The gateway filters replaced by one ext_proc filter to the trivial server."""
    cluster = ext_proc_cluster(config)
    trivial = {
        "name": "trivial",
        "typed_config": {
            "@type": EXT_PROC,
            "grpc_service": {"envoy_grpc": {"cluster_name": cluster}, "timeout": "2s"},
            "failure_mode_allow": False,
            "message_timeout": "2s",
            "processing_mode": TRIVIAL_MODE,
        },
    }
    for filters in http_filter_lists(config):
        first = next((i for i, f in enumerate(filters) if is_gateway_filter(f)), None)
        if first is not None:
            filters[:] = [f for f in filters if not is_gateway_filter(f)]
            filters.insert(first, trivial)
    drop_access_logs(config)
    return config


# --------------------------------------------------------------------------- the stacks


def standalone_config(org: str, route: str | None = None) -> str:
    policies = "\n".join(
        f"  - {{id: p{i}, name: {name}, type: {kind}, config: {json.dumps(config)}}}"
        for i, (name, kind, config) in enumerate(POLICIES)
    )
    return f"""version: 1
applications:
  - id: bench
    org_id: {org}
    keys: [{{environment: prod, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, {f"route: {route}, " if route else ""}input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
policies:
{policies}
"""


async def seed_production(dsn: str, cluster: str = "upstream") -> str:
    from policy_sidecar.store.postgres import (
        ApiKeyRepository,
        ApplicationRepository,
        ModelRepository,
        PolicyRepository,
        migrate,
        open_pool,
    )

    await migrate(dsn)
    pool = await open_pool(dsn)
    try:
        app = await ApplicationRepository(pool).create(
            org_id=f"bench-{uuid.uuid4().hex[:6]}", name="bench"
        )
        key = await ApiKeyRepository(pool).create(app_id=app.id, environment="prod")
        await ModelRepository(pool).create(
            name="gpt-4o-mini",
            provider="openai",
            upstream_model="gpt-4o-mini",
            upstream_cluster=cluster,
            input_price_per_mtok=Decimal("0.15"),
            output_price_per_mtok=Decimal("0.6"),
        )
        for name, kind, config in POLICIES:
            await PolicyRepository(pool).create(name=name, type=kind, config=config)
        return str(key.secret)
    finally:
        await pool.close()


@dataclass
class Target:
    mode: str
    url: str  # the chat completions URL
    key: str
    admin_port: int | None  # Envoy's (None: LiteLLM)
    gateway_pids: list[int]  # sidecar / trivial / LiteLLM processes
    envoy_pid: int | None
    cluster: str | None = None
    stack: Stack | None = None
    stream_model: str = "gpt-4o-mini"


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    upstream_port: int = 0
    fake_port: int = 0
    # --upstream tls-account: the account every stack's Envoy gets, and its key file's dir.
    account: ProviderAccount | None = None
    credentials: Path | None = None
    stacks: list[Stack] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for stack in reversed(self.stacks):
            stack.stop()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()

    def start_upstream(self) -> None:
        base = new_stack(self.workdir / "upstream")
        self.stacks.append(base)
        base.start_fake_provider(args=["--chunk-delay", CHUNK_DELAY])
        self.fake_port = base.upstream_port
        self.upstream_port = free_port()
        admin = free_port()
        tls = None
        if self.args.upstream == "tls-account":
            tls = make_tls(base.workdir)
            self.credentials = self.workdir / "credentials"
            self.credentials.mkdir()
            (self.credentials / f"{ACCOUNT}.yaml").write_text(
                secret_file_text(ACCOUNT, ACCOUNT_KEY)
            )
            self.account = ProviderAccount(
                name=ACCOUNT,
                provider="openai",
                base_host=ACCOUNT_HOST,
                credential_ref=ACCOUNT,
                port=self.upstream_port,
                ca_file=str(tls.ca),
                address="127.0.0.1",
            )
        start_envoy_config(
            base,
            "upstream-envoy",
            upstream_config(self.upstream_port, admin, base.upstream_port, tls),
            admin,
        )

    def new_stack(self, mode: str) -> Stack:
        path, n = self.workdir / mode, 1
        while path.exists():  # a second stack of one mode (bench/stream_bisect.py)
            n += 1
            path = self.workdir / f"{mode}-{n}"
        stack = new_stack(path, workers=self.args.workers)
        stack.upstream_port = self.upstream_port
        if self.account is not None:
            stack.accounts = [self.account]
            stack.credentials_dir = self.credentials
        self.stacks.append(stack)
        return stack

    def rendered(self, stack: Stack) -> dict[str, Any]:
        """The product's Envoy config for this stack, rendered by the launcher."""
        proc = stack.start_envoy(1)
        proc.stop()
        stack.processes.pop("envoy")
        config: dict[str, Any] = yaml.safe_load((stack.workdir / "envoy.yaml").read_text())
        return config

    def target(
        self, mode: str, envoy_transform: Callable[[dict[str, Any]], None] | None = None
    ) -> Target:
        stack = self.new_stack(mode)
        if mode == "memory-nolua" and envoy_transform is None:
            envoy_transform = without_lua
        if mode in ("envoy", "trivial", "trivial-pinned", "lua"):
            config = self.rendered(stack)
            cluster = ext_proc_cluster(config)
            pids: list[int] = []
            if mode == "lua":
                config = lua_only(config)
            elif mode.startswith("trivial"):
                ports = ",".join(str(p) for p in stack.sidecar_ports)
                argv = [sys.executable, str(HERE / "trivial_extproc.py"), "--ports", ports]
                # trivial-pinned: each process on a CPU, as the sidecar's workers pin
                # themselves (POLICY_SIDECAR_PIN_WORKERS=auto) on this machine.
                argv += ["--pin"] if "pinned" in mode else []
                argv += getattr(self.args, "trivial_args", [])  # bench/round_trips.py
                trivial = stack.start_process("trivial", argv)
                for port in stack.sidecar_ports:
                    wait_tcp(trivial, port)
                pids = [trivial.popen.pid]
                config = with_trivial(config)
            else:
                config = without_gateway(config)
            if self.account is not None:
                default_route_to_account(config)
            if envoy_transform is not None:
                envoy_transform(config)
            envoy = start_envoy_config(stack, "envoy", config, stack.admin_port)
            return Target(
                mode,
                f"{stack.url}/v1/chat/completions",
                KEY,
                stack.admin_port,
                pids,
                envoy.popen.pid,
                cluster if mode.startswith("trivial") else None,
                stack,
            )
        env = {"POLICY_SIDECAR_LOG_LEVEL": "WARNING"}
        key = KEY
        config_path: Path | None = stack.workdir / "standalone.yaml"
        assert config_path is not None
        route = ACCOUNT if self.account is not None else None
        config_path.write_text(standalone_config(f"bench-{uuid.uuid4().hex[:8]}", route))
        if mode == "redis":
            env["POLICY_SIDECAR_REDIS_URL"] = REDIS
        elif mode == "production":
            dsn = self.production_dsn()
            key = asyncio.run(seed_production(dsn, route or "upstream"))
            env |= {"POLICY_SIDECAR_DATABASE_URL": dsn, "POLICY_SIDECAR_REDIS_URL": REDIS}
            config_path = None
        env |= self.args.sidecar_env
        sidecar = stack.start_sidecar(config_path, env)
        envoy = stack.start_envoy(1)
        rendered = yaml.safe_load((stack.workdir / "envoy.yaml").read_text())
        cluster = ext_proc_cluster(rendered)
        # Restarted with the same config plus the timing log (and any change asked for).
        stack.processes.pop("envoy").stop()
        if envoy_transform is not None:
            envoy_transform(rendered)
        envoy = start_envoy_config(stack, "envoy", rendered, stack.admin_port)
        return Target(
            mode,
            f"{stack.url}/v1/chat/completions",
            key,
            stack.admin_port,
            [sidecar.popen.pid],
            envoy.popen.pid,
            cluster,
            stack,
        )

    def production_dsn(self) -> str:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(BASE_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")

        def drop() -> None:
            with psycopg.connect(BASE_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")

        self.cleanups.append(drop)
        return make_conninfo(BASE_DSN, options=f"-c search_path={schema}")

    def litellm(self) -> Target | None:
        if self.account is not None:
            print("note: LiteLLM's row has no TLS provider account: skipped", flush=True)
            return None
        binary = self.args.litellm or shutil.which("litellm")
        beside = Path(sys.executable).parent / "litellm"
        if binary is None and beside.exists():
            binary = str(beside)
        if binary is None and importlib.util.find_spec("litellm") is None:
            print(
                "note: LiteLLM not installed (pip install -e '.[bench]', or --litellm PATH): "
                "its row is skipped",
                flush=True,
            )
            return None
        stack = self.new_stack("litellm")
        port = free_port()
        config = {
            "model_list": [
                {
                    "model_name": name,
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": f"http://127.0.0.1:{self.upstream_port}/v1",
                        "api_key": "sk-bench",
                        "rpm": 100000000,
                        "tpm": 100000000000,
                        **extra,
                    },
                }
                # The stream deployment asks the upstream for the paced fake provider.
                for name, extra in (
                    ("gpt-4o-mini", {}),
                    ("gpt-4o-mini-stream", {"extra_headers": STREAM_HEADERS}),
                )
            ],
            "router_settings": {"enable_pre_call_checks": True},
            "general_settings": {"master_key": f"sk-{KEY}"},
        }
        path = stack.workdir / "litellm.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = stack.start_process(
            "litellm",
            [
                binary or "litellm",
                "--config",
                str(path),
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
        )
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
        return Target(
            "litellm",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            f"sk-{KEY}",
            None,
            [proc.popen.pid],
            None,
            stream_model="gpt-4o-mini-stream",
        )


# --------------------------------------------------------------------------- load


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
{extra}
"""
# Counts answers by kind (200, our fast overload 503, other) across wrk threads.
WRK_COUNTING = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; overloaded = 0; unavailable = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 and body and string.find(body, "sidecar_overloaded", 1, true) then
    overloaded = overloaded + 1
  elseif status == 503 and body and string.find(body, "policy_sidecar_unavailable", 1, true) then
    unavailable = unavailable + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok"); b = b + t:get("overloaded")
    c = c + t:get("unavailable"); d = d + t:get("other")
  end
  io.write(string.format("COUNTS ok=%d overloaded=%d unavailable=%d other=%d\\n", a, b, c, d))
end
"""


def wrk(
    target: Target, *, connections: int, duration: float, workdir: Path, counting: bool = False
) -> dict[str, float]:
    script = workdir / f"wrk-{target.mode}-{'counting' if counting else 'plain'}.lua"
    script.write_text(
        WRK_SCRIPT.format(
            body=json.dumps(json.dumps(BODY)),
            key=target.key,
            extra=WRK_COUNTING if counting else "",
        )
    )
    threads = 1 if connections < 64 else 2
    run = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target.url,
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed ({run.returncode}): {(run.stderr or run.stdout)[-500:]}")
    out = run.stdout

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    def number(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else 0.0

    result = {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": number(r"(\d+) requests in"),
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non2xx": number(r"Non-2xx or 3xx responses: (\d+)"),
        "timeouts": number(r"timeout (\d+)"),
    }
    m = re.search(r"COUNTS ok=(\d+) overloaded=(\d+) unavailable=(\d+) other=(\d+)", out)
    if m:
        result |= {
            "ok": float(m[1]),
            "overloaded": float(m[2]),
            "unavailable": float(m[3]),
            "other": float(m[4]),
        }
    return result


async def one_stream(
    session: aiohttp.ClientSession, target: Target, chunks: int, kind: str = "stream"
) -> tuple[float, float] | None:
    """(time to first line, total) in ms, or None (printed) when not a 200."""
    body = {**BODY, "model": target.stream_model, "stream": True, "max_tokens": chunks}
    headers = {"authorization": f"Bearer {target.key}", KIND_HEADER: kind, **STREAM_HEADERS}
    start = time.perf_counter()
    first = 0.0
    async with session.post(target.url, json=body, headers=headers) as resp:
        if resp.status != 200:
            print(f"  {target.mode}: a stream answered {resp.status}: {(await resp.text())[:200]}")
            return None
        async for _line in resp.content:
            if not first:
                first = time.perf_counter() - start
    return first * 1000, (time.perf_counter() - start) * 1000


async def streams(
    target: Target, *, count: int, concurrency: int, chunks: int, kind: str = "stream"
) -> list[tuple[float, float]]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        sem = asyncio.Semaphore(concurrency)

        async def bounded() -> tuple[float, float] | None:
            async with sem:
                return await one_stream(session, target, chunks, kind)

        done = await asyncio.gather(*(bounded() for _ in range(count)))
    ok = [d for d in done if d is not None]
    if not ok:
        raise SystemExit(f"{target.mode}: no stream succeeded")
    return ok


def worker_requests(target: Target) -> dict[str, int]:
    """Requests per sidecar worker (its ext_proc port), from the sidecar's /metrics."""
    if target.stack is None or target.mode not in SIDECAR_MODES:
        return {}
    url = f"http://127.0.0.1:{target.stack.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    counts: dict[str, int] = {}
    for m in re.finditer(
        r'^policy_sidecar_worker_requests_total\{worker="(\d+)"\} ([\d.e+]+)$', text, re.M
    ):
        counts[m[1]] = int(float(m[2]))
    return counts


def worker_counts(target: Target) -> dict[str, int]:
    """Ext_proc streams per worker endpoint, from Envoy's admin /clusters."""
    if target.admin_port is None or target.cluster is None:
        return {}
    with urllib.request.urlopen(f"http://127.0.0.1:{target.admin_port}/clusters", timeout=5) as r:
        text = r.read().decode()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == target.cluster and parts[2] == "rq_total":
            counts[parts[1].rsplit(":", 1)[1]] = int(parts[3])
    return counts


def top_share(before: dict[str, int], after: dict[str, int]) -> float:
    """The busiest worker endpoint's share of the streams between two counts (NaN: none;
    0.5 with two workers is an even spread, 1.0 all on one)."""
    diff = [after[port] - before.get(port, 0) for port in after]
    return max(diff) / sum(diff) if diff and sum(diff) > 0 else float("nan")


def upstream_stats(target: Target, cluster: str = ACCOUNT) -> dict[str, int]:
    """The gateway Envoy's counters of the upstream cluster (connections, TLS
    handshakes, requests, retries)."""
    if target.admin_port is None:
        return {}
    pattern = urllib.parse.quote(f"^cluster\\.{cluster}\\.")
    url = f"http://127.0.0.1:{target.admin_port}/stats?filter={pattern}"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    wanted = ("upstream_cx_total", "ssl.handshake", "upstream_rq_total", "upstream_rq_retry")
    stats = dict.fromkeys(wanted, 0)
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        short = name.removeprefix(f"cluster.{cluster}.")
        if short in stats:
            stats[short] = int(value)
    return stats


def check_account(bench: Bench, target: Target) -> None:
    """One short stream through the row: the fake provider (behind the upstream's TLS
    listener) must get the account's key, not the caller's, and the account cluster
    must have made a TLS handshake."""
    rid = f"bench-check-{uuid.uuid4().hex}"
    body = {**BODY, "model": target.stream_model, "stream": True, "max_tokens": 4}
    headers = {
        "authorization": f"Bearer {target.key}",
        "content-type": "application/json",
        "x-request-id": rid,
        **STREAM_HEADERS,
    }
    request = urllib.request.Request(target.url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            r.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{target.mode}: the check answered {e.code}: {e.read()[:300]!r}") from e
    with urllib.request.urlopen(f"http://127.0.0.1:{bench.fake_port}{RECEIVED_PATH}") as r:
        seen = [x for x in json.loads(r.read()) if x["headers"].get("x-request-id") == rid]
    keys = [x["headers"].get("authorization") for x in seen]
    stats = upstream_stats(target)
    if keys != [f"Bearer {ACCOUNT_KEY}"] or stats["ssl.handshake"] < 1:
        raise SystemExit(f"{target.mode}: the account's key or TLS is missing: {keys} {stats}")
    print(
        f"checked {target.mode}: the provider got the injected key over TLS "
        f"({stats['ssl.handshake']} handshake(s))",
        flush=True,
    )


# --------------------------------------------------------------------------- measuring


def measure(bench: Bench, target: Target, warm: bool) -> dict[str, float]:
    a = bench.args
    w = bench.workdir
    if warm:
        if not a.only_streams:
            wrk(target, connections=4, duration=2, workdir=w)
        asyncio.run(streams(target, count=2, concurrency=1, chunks=a.chunks))
    out: dict[str, float] = {}
    if a.only_streams:
        nan = float("nan")
        out |= dict.fromkeys(
            ("rps", "c16_p50_ms", "gateway_cpu_us_per_req", "envoy_cpu_us_per_req"), nan
        )
        out |= {"c1_p50_ms": nan, "c1_p99_ms": nan, "non2xx": 0.0}
        out |= {"c16_top_share": nan, "c1_top_share": nan}
    else:
        gw0, en0 = cpu_seconds(target.gateway_pids), cpu_seconds([target.envoy_pid or 0])
        streams0 = worker_counts(target)
        loaded = wrk(target, connections=16, duration=a.duration, workdir=w)
        gw1, en1 = cpu_seconds(target.gateway_pids), cpu_seconds([target.envoy_pid or 0])
        streams1 = worker_counts(target)
        n = max(loaded["requests"], 1.0)
        out |= {
            "rps": loaded["rps"],
            "c16_p50_ms": loaded["p50_ms"],
            "non2xx": loaded["non2xx"],
            "gateway_cpu_us_per_req": (gw1 - gw0) / n * 1e6,
            "envoy_cpu_us_per_req": (en1 - en0) / n * 1e6,
        }
        unloaded = wrk(target, connections=1, duration=a.duration_c1, workdir=w)
        out |= {"c1_p50_ms": unloaded["p50_ms"], "c1_p99_ms": unloaded["p99_ms"]}
        # How the ext_proc cluster's load balancer spread each load over the workers.
        out["c16_top_share"] = top_share(streams0, streams1)
        out["c1_top_share"] = top_share(streams1, worker_counts(target))
        out["non2xx"] += unloaded["non2xx"]
    tag = uuid.uuid4().hex[:8]  # this round's requests in the timing log
    one = asyncio.run(
        streams(target, count=a.streams, concurrency=1, chunks=a.chunks, kind=f"c1-{tag}")
    )
    out |= {
        "ttft_c1_ms": statistics.median(t for t, _ in one),
        "total_c1_ms": statistics.median(t for _, t in one),
    }
    gw0, en0 = cpu_seconds(target.gateway_pids), cpu_seconds([target.envoy_pid or 0])
    many = asyncio.run(
        streams(target, count=a.streams * 2, concurrency=8, chunks=a.chunks, kind=f"c8-{tag}")
    )
    gw1, en1 = cpu_seconds(target.gateway_pids), cpu_seconds([target.envoy_pid or 0])
    out |= {
        "ttft_c8_ms": statistics.median(t for t, _ in many),
        "total_c8_ms": statistics.median(t for _, t in many),
        "gateway_cpu_ms_per_stream": (gw1 - gw0) / len(many) * 1000,
        "envoy_cpu_ms_per_stream": (en1 - en0) / len(many) * 1000,
        "stream_failures": float(a.streams * 3 - len(one) - len(many)),
    }
    # Time to first byte by Envoy's own clock (first request byte in -> first response
    # byte out): steadier than the client's on a busy machine. NaN without a timing log.
    nan = float("nan")
    out["envoy_ttfb_c1_ms"] = timings(target, f"c1-{tag}").get("ttfb", nan) / 1000
    out["envoy_ttfb_c8_ms"] = timings(target, f"c8-{tag}").get("ttfb", nan) / 1000
    return out


def median_rounds(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def report(
    results: dict[str, dict[str, float]], counts: dict[str, dict[str, int]], chunks: int
) -> dict[str, Any]:
    base = results["envoy"]
    trivial = results.get("trivial")
    derived: dict[str, dict[str, float]] = {}
    print()
    print(
        f"{'path':11s} {'req/s c=16':>10s} {'p50 c=1':>8s} {'added':>7s} {'CPU/req':>8s} "
        f"{'TTFT+':>7s} {'TTFT+c8':>8s} {'E.TTFB+':>8s} {'E.c8':>6s} {'chunk+':>7s} "
        f"{'GW CPU/strm':>11s} {'errors':>6s}"
    )
    for mode, r in results.items():
        added = r["c1_p50_ms"] - base["c1_p50_ms"]
        ttft = r["ttft_c1_ms"] - base["ttft_c1_ms"]
        ttft8 = r["ttft_c8_ms"] - base["ttft_c8_ms"]
        ettfb = r["envoy_ttfb_c1_ms"] - base["envoy_ttfb_c1_ms"]
        ettfb8 = r["envoy_ttfb_c8_ms"] - base["envoy_ttfb_c8_ms"]
        per_chunk = ((r["total_c1_ms"] - base["total_c1_ms"]) - ttft) / chunks * 1000
        # Gateway CPU per stream: the ext_proc's plus what Envoy spends over Envoy alone.
        gw_stream = r["gateway_cpu_ms_per_stream"] + (
            r["envoy_cpu_ms_per_stream"] - base["envoy_cpu_ms_per_stream"]
            if mode != "litellm"
            else 0.0
        )
        derived[mode] = {
            "added_c1_p50_ms": added,
            "added_ttft_c1_ms": ttft,
            "added_ttft_c8_ms": ttft8,
            "added_envoy_ttfb_c1_ms": ettfb,
            "added_envoy_ttfb_c8_ms": ettfb8,
            "added_per_chunk_us": per_chunk,
            "gateway_cpu_ms_per_stream": gw_stream,
        }
        print(
            f"{mode:11s} {r['rps']:10.0f} {r['c1_p50_ms']:7.2f}m {added:6.2f}m "
            f"{r['gateway_cpu_us_per_req']:7.0f}u {ttft:6.2f}m {ttft8:7.2f}m "
            f"{ettfb:7.2f}m {ettfb8:5.2f}m {per_chunk:6.1f}u "
            f"{gw_stream:10.2f}m {r['non2xx'] + r.get('stream_failures', 0):6.0f}"
        )
    print(
        "(m = ms, u = µs; added = over Envoy alone at c=1; CPU/req = ext_proc processes' CPU "
        "per JSON request at c=16; TTFT+ = added time to the first SSE line, client's clock; "
        "E.TTFB+ = added time to the first response byte, Envoy's clock (E.c8: at c=8); "
        "GW CPU/strm = ext_proc + extra Envoy CPU per 200-chunk stream at 8 concurrent)"
    )
    if trivial is not None:
        t = derived["trivial"]
        print("\nratios vs the trivial ext_proc (same run):")
        for mode in results:
            if mode in ("envoy", "trivial"):
                continue
            if mode == "trivial-pinned":
                print("  (trivial-pinned: the same trivial ext_proc, each process pinned to a CPU)")
            r, d = results[mode], derived[mode]
            print(
                f"  {mode:11s} throughput {r['rps'] / trivial['rps']:5.0%}  "
                f"added p50 {d['added_c1_p50_ms'] / t['added_c1_p50_ms']:4.2f}x  "
                f"CPU/req {r['gateway_cpu_us_per_req'] / trivial['gateway_cpu_us_per_req']:4.2f}x  "
                f"CPU/stream {d['gateway_cpu_ms_per_stream'] / max(t['gateway_cpu_ms_per_stream'], 1e-9):4.2f}x"
            )
    if "litellm" in results:
        print("\nvs LiteLLM (throughput):")
        for mode in SIDECAR_MODES:
            if mode in results:
                print(f"  {mode:11s} {results[mode]['rps'] / results['litellm']['rps']:5.1f}x")
    print("\next_proc streams per worker (Envoy's rq_total per endpoint, whole run):")
    for mode, c in counts.items():
        if c:
            print(f"  {mode:11s} " + "  ".join(f":{port} {n}" for port, n in sorted(c.items())))
    for mode in SIDECAR_MODES:
        if mode in results:
            cpu = results[mode]["gateway_cpu_us_per_req"]
            print(f"capacity ({mode}): {1e6 / cpu:,.0f} JSON req/s per sidecar core")
    return derived


# --------------------------------------------------------------------------- overload


def send_request_time(config: dict[str, Any]) -> None:
    """The first (policy) ext_proc filter also sends ``request.time``: the sidecar then
    sheds requests that queued too long before reaching it (see docs/capacity.md)."""
    for filters in http_filter_lists(config):
        for f in filters:
            typed = f.get("typed_config", {})
            if typed.get("@type") == EXT_PROC and not typed.get("observability_mode"):
                attributes = typed.setdefault("request_attributes", [])
                if "request.time" not in attributes:
                    attributes.append("request.time")
                return


OVERLOAD_VARIANTS: list[tuple[str, dict[str, str], bool]] = [
    # label, sidecar settings, Envoy sends request.time
    ("shipped", {}, False),
    ("+req.time", {}, True),
    (
        "unbounded",
        {
            "POLICY_SIDECAR_MAX_IN_FLIGHT": "1000000",
            "POLICY_SIDECAR_MAX_QUEUE_MS": "0",
        },
        False,
    ),
]


def overload(bench: Bench, results: dict[str, Any]) -> None:
    """Closed-loop wrk far past capacity with the bounds as shipped, with Envoy sending
    ``request.time`` (the age bound), and with no bound; then recovery at c=1."""
    a = bench.args
    print(
        f"\noverload (memory mode): wrk c={a.overload_connections} for "
        f"{a.overload_duration}s, then c=1 for 3 s",
        flush=True,
    )
    for label, settings, request_time in OVERLOAD_VARIANTS:
        saved = a.sidecar_env
        a.sidecar_env = {**saved, **settings}
        try:
            target = bench.target("memory", send_request_time if request_time else None)
        finally:
            a.sidecar_env = saved
        wrk(target, connections=4, duration=2, workdir=bench.workdir)
        over = wrk(
            target,
            connections=a.overload_connections,
            duration=a.overload_duration,
            workdir=bench.workdir,
            counting=True,
        )
        after = wrk(target, connections=1, duration=3, workdir=bench.workdir, counting=True)
        results[f"overload_{label}"] = {"load": over, "after": after}
        print(
            f"  {label:10s} 200s {over.get('ok', 0) / a.overload_duration:5.0f}/s  "
            f"fast 503s {over.get('overloaded', 0) / a.overload_duration:6.0f}/s  "
            f"'sidecar unavailable' 503s {over.get('unavailable', 0):5.0f}  "
            f"other {over.get('other', 0):4.0f}  timeouts {over['timeouts']:4.0f}  "
            f"p50 {over['p50_ms']:6.1f} ms  p99 {over['p99_ms']:7.1f} ms"
            f" | after: c=1 p50 {after['p50_ms']:.2f} ms, errors {after['non2xx']:.0f}",
            flush=True,
        )
        assert target.stack is not None
        target.stack.stop()
        bench.stacks.remove(target.stack)


# --------------------------------------------------------------------------- profile


# Frames every sample of a worker or thread passes through.
BOILERPLATE = (
    "(runners.py)",
    "(process.py)",
    "(spawn.py)",
    "(sidecar.py)",
    "(threading.py)",
    "(base_events.py)",
    "(events.py)",
)


def is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmdline and b"resource_tracker" not in cmdline


def short_frame(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    return f"{name} ({where.rstrip(')').split(':')[0].rsplit('/', 1)[-1]})"


def profile(bench: Bench, target: Target, seconds: int) -> list[str]:
    """py-spy --native on one worker under wrk c=16: top self and inclusive frames."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("note: py-spy not installed (pip install -e '.[bench]'): no profile")
        return []
    # The busiest worker process (not multiprocessing's resource tracker).
    workers = (
        sorted(
            (p for p in descendants(target.gateway_pids[0]) if is_worker(p)),
            key=lambda p: -cpu_seconds([p]),
        )
        or target.gateway_pids
    )
    out = bench.workdir / "profile.txt"
    log = bench.workdir / "py-spy.log"
    with log.open("w") as err:
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "--native",
                "-r",
                "100",
                "-d",
                str(seconds),
                "-p",
                str(workers[0]),
                "-f",
                "raw",
                "-o",
                str(out),
            ],
            stdout=err,
            stderr=err,
        )
        time.sleep(1.0)
        wrk(target, connections=16, duration=seconds, workdir=bench.workdir)
        spy.wait(timeout=seconds + 120)
    if not out.exists():
        print(f"note: py-spy recorded nothing: {log.read_text()[-500:]}")
        return []
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [short_frame(f) for f in stack.split(";")]
        count = int(n)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"py-spy --native, one {target.mode} worker, wrk c=16, {total} samples"]
    lines.append("top self:")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(TOP)]
    lines.append("top inclusive (Python frames below the event loop):")
    python_frames = [
        (frame, n)
        for frame, n in inclusive.most_common()
        if frame.endswith(".py)") and not frame.endswith(BOILERPLATE)
    ]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in python_frames[:TOP]]
    print("\n" + "\n".join(lines))
    return lines


# --------------------------------------------------------------------------- main


def main() -> None:
    # SIGTERM stops the run like ^C: every started process is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short run: 1 round, short loads")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10, help="seconds of wrk c=16")
    parser.add_argument("--duration-c1", type=float, default=6, help="seconds of wrk c=1")
    parser.add_argument("--streams", type=int, default=20, help="streams at c=1 (x2 at c=8)")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--upstream",
        choices=UPSTREAMS,
        default="plain",
        help="plain: a plain-HTTP upstream cluster; tls-account: every row through one "
        "provider account (TLS, the key injected by Envoy)",
    )
    parser.add_argument("--no-overload", action="store_true")
    parser.add_argument(
        "--only-streams",
        action="store_true",
        help="measure only the SSE streams (no wrk JSON loads, no overload run)",
    )
    parser.add_argument("--overload-connections", type=int, default=1024)
    parser.add_argument("--overload-duration", type=int, default=8)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="py-spy one production worker for this long",
    )
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument("--litellm", help="the litellm command (default: on PATH or beside python)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.duration_c1, args.streams = 1, 4, 3, 6
        args.overload_duration = 4
    if args.only_streams:
        args.no_overload = True
    args.sidecar_env = {}
    modes = [m for m in args.modes.split(",") if m]
    if "envoy" not in modes:
        modes.insert(0, "envoy")  # every figure is relative to it
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="ps-hot-path-"))
    bench = Bench(args, workdir)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at start; sidecar workers "
        f"{args.workers}; Envoy --concurrency 1; JSON body {len(json.dumps(BODY))} bytes; "
        f"{args.chunks}-chunk SSE paced {float(CHUNK_DELAY) * 1000:.0f} ms; "
        f"upstream {args.upstream}; "
        f"{args.rounds} round(s), medians",
        flush=True,
    )
    try:
        bench.start_upstream()
        targets: dict[str, Target] = {}
        for mode in modes:
            target = bench.litellm() if mode == "litellm" else bench.target(mode)
            if target is not None:
                if bench.account is not None:
                    check_account(bench, target)
                targets[mode] = target
        rounds: dict[str, list[dict[str, float]]] = {m: [] for m in targets}
        for i in range(args.rounds):
            for mode, target in targets.items():
                figures = measure(bench, target, warm=i == 0)
                rounds[mode].append(figures)
                print(
                    f"round {i + 1} {mode:11s} {figures['rps']:7.0f} req/s  c=1 p50 "
                    f"{figures['c1_p50_ms']:.2f} ms  CPU/req {figures['gateway_cpu_us_per_req']:.0f} µs  "
                    f"TTFT {figures['ttft_c1_ms']:.2f} ms  stream {figures['total_c1_ms']:.1f} ms  "
                    f"busiest worker c=16 {figures['c16_top_share']:.0%} c=1 "
                    f"{figures['c1_top_share']:.0%}",
                    flush=True,
                )
        results = {m: median_rounds(r) for m, r in rounds.items()}
        counts = {m: worker_counts(t) for m, t in targets.items()}
        requests = {m: worker_requests(t) for m, t in targets.items()}
        derived = report(results, counts, args.chunks)
        cluster = ACCOUNT if bench.account is not None else "upstream"
        print(f"upstream cluster {cluster} (the gateway Envoy's counters, whole run):")
        for mode, target in targets.items():
            stats = upstream_stats(target, cluster)
            print(f"  {mode:11s} " + "  ".join(f"{k} {v}" for k, v in stats.items()))
        print("requests per sidecar worker (policy_sidecar_worker_requests_total, whole run):")
        for mode, c in requests.items():
            if c:
                print(f"  {mode:11s} " + "  ".join(f":{port} {n}" for port, n in sorted(c.items())))
        everything: dict[str, Any] = {
            "results": results,
            "derived": derived,
            "worker_streams": counts,
            "worker_requests": requests,
            "load_average_start": load,
            "load_average_end": os.getloadavg(),
            "args": {k: v for k, v in vars(args).items() if k not in ("json",)},
        }
        if args.profile and "production" in targets:
            everything["profile"] = profile(bench, targets["production"], args.profile)
        for mode in list(targets):
            if mode != "envoy":
                stack = targets[mode].stack
                if stack is not None:
                    stack.stop()
        if not args.no_overload:
            overload(bench, everything)
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
        if args.json:
            args.json.write_text(json.dumps(everything, indent=2, default=str))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
