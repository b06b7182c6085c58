"""Settings: one frozen object built from an environment mapping.

| variable | default | meaning |
| --- | --- | --- |
| POLICY_SIDECAR_CONFIG | (required in standalone mode) | the standalone YAML file |
| POLICY_SIDECAR_HOST | 127.0.0.1 | address the ext_proc workers bind |
| POLICY_SIDECAR_PORTS | 50051 | one port per worker process: `50051,50052` or `50051-50054` |
| POLICY_SIDECAR_USAGE_FILE | usage.jsonl | standalone usage sink (JSON lines) |
| POLICY_SIDECAR_SPOOL_DIR | ./spool | usage spool (one subdirectory per worker port) |
| POLICY_SIDECAR_ACCESS_LOG_DIR | ./access-log | Envoy's per-worker access logs, read for usage |
| POLICY_SIDECAR_ENVOY_ADMIN_URL | (none) | Envoy's admin, to rotate the access logs (reopen_logs) |
| POLICY_SIDECAR_ACCESS_LOG_ROTATE_BYTES | 67108864 | rotate a worker's access log past this size |
| POLICY_SIDECAR_ACCESS_LOG_BATCH_MS | 10 | after a batch, the reader waits this long for the next |
| POLICY_SIDECAR_USAGE_BATCH_SIZE | 500 | most usage records per sink write |
| POLICY_SIDECAR_USAGE_BATCH_DELAY | 0.2 | seconds a usage record waits for its batch to fill |
| POLICY_SIDECAR_USAGE_QUEUE_SIZE | 100000 | usage records held in memory before the spool |
| POLICY_SIDECAR_INJECT_STREAM_USAGE | true | ask OpenAI-style streams for usage |
| POLICY_SIDECAR_GRACE_SECONDS | 10 | SIGTERM: time to finish streams and flush usage |
| POLICY_SIDECAR_MAX_MESSAGE_BYTES | 33554432 | largest gRPC message accepted from Envoy |
| POLICY_SIDECAR_MAX_IN_FLIGHT | 64 | requests a worker decides at once; past it: a fast 503 |
| POLICY_SIDECAR_MAX_QUEUE_MS | 250 | a request older than this at its first message: fast 503 |
| POLICY_SIDECAR_PIN_WORKERS | auto | a CPU per worker: `auto` (CPUs = workers), `true`, `false` |
| POLICY_SIDECAR_TIKTOKEN_DIR | (package data) | directory of `.tiktoken` files to use instead |
| POLICY_SIDECAR_LOG_LEVEL | INFO | Python log level |
| POLICY_SIDECAR_REDIS_URL | (none) | counters, invalidations: `redis://…` or `redis+cluster://…` |
| POLICY_SIDECAR_DATABASE_URL | (none: standalone) | Postgres: production mode |
| POLICY_SIDECAR_DATABASE_POOL_SIZE | 4 | most Postgres connections per worker (production) |
| POLICY_SIDECAR_POLICY_CACHE_SECONDS | 5 | production: seconds policies stay cached |
| POLICY_SIDECAR_IDENTITY_CACHE_SECONDS | 30 | production: seconds resolved API keys stay cached |
| POLICY_SIDECAR_METRICS_PORT | 9090 | Prometheus `/metrics` (all workers merged); 0 turns it off |
| POLICY_SIDECAR_METRICS_DETAILED_LABELS | true | app and model labels on metrics (false: "all") |
| POLICY_SIDECAR_CEL_ENGINE | cel-expr | `cel-expr` (official C++ runtime) or `cel-python` |
| POLICY_SIDECAR_UNKNOWN_PATHS | deny | production: `deny` (404) or `passthrough` unknown paths |
| POLICY_SIDECAR_CDS_PATH | (none: no account clusters) | CDS file of the accounts' clusters |
| POLICY_SIDECAR_CREDENTIALS_DIR | /etc/policy-sidecar/credentials | Envoy's `<ref>.yaml` secrets |
| POLICY_SIDECAR_UNPRICED | deny | production: unpriced models `deny` (403) or `allow_and_report` |

Nothing else in the package reads the environment: `read_environment` is the one
reader, used by `Settings.from_env`, by the admin service's settings (a separate process
with its own variables, `admin.settings`, parsed the same way) and by `child_environment`,
the environment the launcher gives the processes it starts. Nothing writes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from policy_sidecar.redis_clients import RedisUrlError, check_redis_url
from policy_sidecar.wiring.affinity import PinMode

PREFIX = "POLICY_SIDECAR_"


def read_environment() -> Mapping[str, str]:
    """The process environment: the package's one place that reads it."""
    return os.environ


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child process: this one's (PATH, HOME, …) with the given
    ``POLICY_SIDECAR_*`` settings on top; every name in ``settings`` must be one."""
    bad = [name for name in settings if not name.startswith(PREFIX)]
    if bad:
        raise SettingsError(f"not a {PREFIX}* setting: {', '.join(sorted(bad))}")
    return {**read_environment(), **settings}


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    config_path: str | None = None
    host: str = "127.0.0.1"
    ports: tuple[int, ...] = (50051,)
    usage_file: str = "usage.jsonl"
    spool_dir: str = "./spool"
    # Envoy writes one access log line per request here, one file per worker; the
    # worker reads its file to record usage (docs/envoy.md, "Usage capture").
    access_log_dir: str = "./access-log"
    # With Envoy's admin URL, a worker rotates its access log once it has read past
    # this many bytes (rename, then POST /reopen_logs); without it the file grows.
    envoy_admin_url: str | None = None
    access_log_rotate_bytes: int = 64 * 1024 * 1024
    # After handing a batch of lines over, the reader waits this long before reading
    # again: a longer wait costs the worker less CPU, but reservations settle later and
    # token limits are checked against reservations for longer (docs/envoy.md).
    access_log_batch_ms: float = 10.0
    usage_batch_size: int = 500
    usage_batch_delay: float = 0.2
    usage_queue_size: int = 100_000
    inject_stream_usage: bool = True
    grace_seconds: float = 10.0
    max_message_bytes: int = 32 * 1024 * 1024
    max_in_flight: int = 64
    # The ext_proc port's gRPC server: "h2" (extproc.h2grpc, on the event loop) or
    # "grpcio" (grpc.aio, the C core on its own thread): docs/envoy.md.
    grpc_server: Literal["h2", "grpcio"] = "h2"
    max_queue_ms: float = 250.0
    pin_workers: PinMode = "auto"
    tiktoken_dir: str | None = None
    log_level: str = "INFO"
    redis_url: str | None = None
    database_url: str | None = None
    database_pool_size: int = 4
    policy_cache_seconds: float = 5.0
    identity_cache_seconds: float = 30.0
    metrics_port: int = 9090
    metrics_detailed_labels: bool = True
    cel_engine: Literal["cel-expr", "cel-python"] = "cel-expr"
    unknown_paths: Literal["deny", "passthrough"] = "deny"
    cds_path: str | None = None
    credentials_dir: str = "/etc/policy-sidecar/credentials"
    unpriced: Literal["deny", "allow_and_report"] = "deny"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = read_environment() if env is None else env

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value.strip() if value is not None and value.strip() else None

        defaults = cls()
        return cls(
            config_path=get("CONFIG"),
            host=get("HOST") or defaults.host,
            ports=parse_ports(get("PORTS")) if get("PORTS") else defaults.ports,
            usage_file=get("USAGE_FILE") or defaults.usage_file,
            spool_dir=get("SPOOL_DIR") or defaults.spool_dir,
            access_log_dir=get("ACCESS_LOG_DIR") or defaults.access_log_dir,
            envoy_admin_url=get("ENVOY_ADMIN_URL"),
            access_log_rotate_bytes=_positive_int(
                "ACCESS_LOG_ROTATE_BYTES",
                get("ACCESS_LOG_ROTATE_BYTES"),
                defaults.access_log_rotate_bytes,
            ),
            access_log_batch_ms=_batch_ms(get("ACCESS_LOG_BATCH_MS"), defaults.access_log_batch_ms),
            usage_batch_size=_positive_int(
                "USAGE_BATCH_SIZE", get("USAGE_BATCH_SIZE"), defaults.usage_batch_size
            ),
            usage_batch_delay=_float(
                "USAGE_BATCH_DELAY", get("USAGE_BATCH_DELAY"), defaults.usage_batch_delay
            ),
            usage_queue_size=_positive_int(
                "USAGE_QUEUE_SIZE", get("USAGE_QUEUE_SIZE"), defaults.usage_queue_size
            ),
            inject_stream_usage=_bool("INJECT_STREAM_USAGE", get("INJECT_STREAM_USAGE"), True),
            grace_seconds=_float("GRACE_SECONDS", get("GRACE_SECONDS"), defaults.grace_seconds),
            max_message_bytes=int(
                _float("MAX_MESSAGE_BYTES", get("MAX_MESSAGE_BYTES"), defaults.max_message_bytes)
            ),
            max_in_flight=_positive_int(
                "MAX_IN_FLIGHT", get("MAX_IN_FLIGHT"), defaults.max_in_flight
            ),
            grpc_server=_grpc_server(get("GRPC_SERVER")),
            max_queue_ms=_float("MAX_QUEUE_MS", get("MAX_QUEUE_MS"), defaults.max_queue_ms),
            pin_workers=_pin_workers(get("PIN_WORKERS")),
            tiktoken_dir=get("TIKTOKEN_DIR"),
            log_level=(get("LOG_LEVEL") or defaults.log_level).upper(),
            redis_url=redis_url_setting("REDIS_URL", get("REDIS_URL")),
            database_url=get("DATABASE_URL"),
            database_pool_size=_positive_int(
                "DATABASE_POOL_SIZE", get("DATABASE_POOL_SIZE"), defaults.database_pool_size
            ),
            policy_cache_seconds=_float(
                "POLICY_CACHE_SECONDS", get("POLICY_CACHE_SECONDS"), defaults.policy_cache_seconds
            ),
            identity_cache_seconds=_float(
                "IDENTITY_CACHE_SECONDS",
                get("IDENTITY_CACHE_SECONDS"),
                defaults.identity_cache_seconds,
            ),
            metrics_port=int(_float("METRICS_PORT", get("METRICS_PORT"), defaults.metrics_port)),
            metrics_detailed_labels=(get("METRICS_DETAILED_LABELS") or "true").lower()
            not in ("0", "false", "no", "off"),
            cel_engine=_cel_engine(get("CEL_ENGINE")),
            unknown_paths=_unknown_paths(get("UNKNOWN_PATHS")),
            cds_path=get("CDS_PATH"),
            credentials_dir=get("CREDENTIALS_DIR") or defaults.credentials_dir,
            unpriced=_unpriced(get("UNPRICED")),
        )


def parse_ports(text: str | None) -> tuple[int, ...]:
    """``50051``, ``50051,50052`` or ``50051-50054``."""
    if not text:
        raise SettingsError(f"{PREFIX}PORTS: empty")
    ports: list[int] = []
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            start = int(low)
            end = int(high) if dash else start
            if end < start:
                raise ValueError(part)
            ports.extend(range(start, end + 1))
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}PORTS: cannot read {text!r} as ports") from exc
    if not ports or any(not 0 < p < 65536 for p in ports) or len(set(ports)) != len(ports):
        raise SettingsError(f"{PREFIX}PORTS: {text!r} must be distinct ports in 1..65535")
    return tuple(ports)


def redis_url_setting(name: str, value: str | None) -> str | None:
    """A Redis URL setting, checked (single Redis or ``redis+cluster://``); the error
    names the variable, never the URL (it may hold a password)."""
    if value is None:
        return None
    try:
        check_redis_url(value)
    except RedisUrlError as exc:
        raise SettingsError(f"{PREFIX}{name}: {exc}") from exc
    return value


def _cel_engine(value: str | None) -> Literal["cel-expr", "cel-python"]:
    if value is None or value == "cel-expr":
        return "cel-expr"
    if value == "cel-python":
        return "cel-python"
    raise SettingsError(f"{PREFIX}CEL_ENGINE: expected cel-expr or cel-python, got {value!r}")


def _grpc_server(value: str | None) -> Literal["h2", "grpcio"]:
    if value is None or value == "h2":
        return "h2"
    if value == "grpcio":
        return "grpcio"
    raise SettingsError(f"{PREFIX}GRPC_SERVER: expected h2 or grpcio, got {value!r}")


def _unknown_paths(value: str | None) -> Literal["deny", "passthrough"]:
    if value is None or value == "deny":
        return "deny"
    if value == "passthrough":
        return "passthrough"
    raise SettingsError(f"{PREFIX}UNKNOWN_PATHS: expected deny or passthrough, got {value!r}")


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{PREFIX}{name}: expected true or false, got {value!r}")


def _float(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        result = float(value)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}: expected a number, got {value!r}") from exc
    if result < 0:
        raise SettingsError(f"{PREFIX}{name}: must not be negative")
    return result


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        result = int(value)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}: expected a whole number, got {value!r}") from exc
    if result < 1:
        raise SettingsError(f"{PREFIX}{name}: must be at least 1")
    return result


def _batch_ms(value: str | None, default: float) -> float:
    ms = _float("ACCESS_LOG_BATCH_MS", value, default)
    if not 0 < ms <= 1000:
        raise SettingsError(
            f"{PREFIX}ACCESS_LOG_BATCH_MS: expected milliseconds in (0, 1000], got {value!r}"
        )
    return ms


def _pin_workers(value: str | None) -> PinMode:
    lowered = (value or "auto").lower()
    if lowered == "auto":
        return "auto"
    if lowered in ("1", "true", "yes", "on"):
        return "true"
    if lowered in ("0", "false", "no", "off"):
        return "false"
    raise SettingsError(f"{PREFIX}PIN_WORKERS: expected auto, true or false, got {value!r}")


def _unpriced(value: str | None) -> Literal["deny", "allow_and_report"]:
    if value is None or value == "deny":
        return "deny"
    if value == "allow_and_report":
        return "allow_and_report"
    raise SettingsError(f"{PREFIX}UNPRICED: expected deny or allow_and_report, got {value!r}")
