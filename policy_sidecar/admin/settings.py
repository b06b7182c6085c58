"""Settings of the admin service, from POLICY_SIDECAR_* environment variables.

The admin service is its own process with its own variables; they are read, like the
sidecar's `wiring.settings.Settings`, through `wiring.settings.read_environment`.

| variable | default | meaning |
| --- | --- | --- |
| POLICY_SIDECAR_DATABASE_URL | (required) | Postgres URL |
| POLICY_SIDECAR_REDIS_URL | (none: nothing published) | `redis://…` or `redis+cluster://…` |
| POLICY_SIDECAR_ADMIN_HOST | 127.0.0.1 | address the admin gRPC server binds |
| POLICY_SIDECAR_ADMIN_PORT | 50070 | admin gRPC port (0: any free port) |
| POLICY_SIDECAR_ADMIN_METRICS_PORT | 9470 | Prometheus `/metrics` port (0: any free; -1: off) |
| POLICY_SIDECAR_ADMIN_TOKENS | | `name:role:token` entries, comma or newline separated |
| POLICY_SIDECAR_ADMIN_TOKENS_FILE | | file of `name:role:token` lines (`#` comments) |
| POLICY_SIDECAR_ADMIN_TLS_CERT | | PEM certificate chain; with _KEY enables TLS |
| POLICY_SIDECAR_ADMIN_TLS_KEY | | PEM private key |
| POLICY_SIDECAR_CREDENTIALS_DIR | (none) | credentials dir: a `credential_ref` names a file in it |
| POLICY_SIDECAR_UI_PORT | -1 (off) | web console port (`--ui-port`; 0: any free port; docs/ui.md) |
| POLICY_SIDECAR_UI_HOST | the admin host | address the console binds |
| POLICY_SIDECAR_UI_COOKIE_SECURE | false | `Secure` cookie behind a TLS-terminating ingress |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from policy_sidecar.admin.auth import AdminToken, TokenError, parse_tokens
from policy_sidecar.wiring.settings import SettingsError, read_environment, redis_url_setting

__all__ = ["AdminSettings"]

P = "POLICY_SIDECAR_"


@dataclass(frozen=True, slots=True)
class AdminSettings:
    database_url: str
    tokens: tuple[AdminToken, ...] = field(repr=False)
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 50070
    metrics_port: int = 9470
    tls_cert: bytes | None = field(default=None, repr=False)
    tls_key: bytes | None = field(default=None, repr=False)
    credentials_dir: Path | None = None
    ui_port: int = -1
    ui_host: str | None = None
    ui_cookie_secure: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AdminSettings:
        env = read_environment() if env is None else env

        def get(name: str) -> str | None:
            value = env.get(P + name, "").strip()
            return value or None

        database_url = get("DATABASE_URL")
        if database_url is None:
            raise SettingsError(f"{P}DATABASE_URL is required")
        tokens = _tokens(get("ADMIN_TOKENS"), get("ADMIN_TOKENS_FILE"))
        cert_path, key_path = get("ADMIN_TLS_CERT"), get("ADMIN_TLS_KEY")
        if (cert_path is None) != (key_path is None):
            raise SettingsError(f"{P}ADMIN_TLS_CERT and {P}ADMIN_TLS_KEY go together")
        return cls(
            database_url=database_url,
            tokens=tokens,
            redis_url=redis_url_setting("REDIS_URL", get("REDIS_URL")),
            host=get("ADMIN_HOST") or "127.0.0.1",
            port=_int("ADMIN_PORT", get("ADMIN_PORT"), 50070),
            metrics_port=_int("ADMIN_METRICS_PORT", get("ADMIN_METRICS_PORT"), 9470),
            tls_cert=_read(f"{P}ADMIN_TLS_CERT", cert_path),
            tls_key=_read(f"{P}ADMIN_TLS_KEY", key_path),
            credentials_dir=_directory("CREDENTIALS_DIR", get("CREDENTIALS_DIR")),
            ui_port=_int("UI_PORT", get("UI_PORT"), -1),
            ui_host=get("UI_HOST"),
            ui_cookie_secure=(get("UI_COOKIE_SECURE") or "").lower() in ("1", "true", "yes"),
        )


def _tokens(inline: str | None, path: str | None) -> tuple[AdminToken, ...]:
    tokens: list[AdminToken] = []
    try:
        if inline:
            tokens += parse_tokens(re.split(r"[,\n]", inline), source=f"{P}ADMIN_TOKENS")
        if path:
            with open(path, encoding="utf-8") as fh:
                tokens += parse_tokens(fh, source=path)
    except (TokenError, OSError) as exc:
        raise SettingsError(str(exc)) from exc
    if not tokens:
        raise SettingsError(f"no admin tokens: set {P}ADMIN_TOKENS or {P}ADMIN_TOKENS_FILE")
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise SettingsError("admin token names must be unique")
    return tuple(tokens)


def _int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise SettingsError(f"{P}{name}: not an integer: {value!r}") from exc


def _directory(name: str, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise SettingsError(f"{P}{name}: not a directory: {value}")
    return path


def _read(name: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise SettingsError(f"{name}: {exc}") from exc
