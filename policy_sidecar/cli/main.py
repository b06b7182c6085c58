"""The ``policy-sidecar`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from policy_sidecar.cli.prices import add_prices_parser
from policy_sidecar.envoy.accounts_file import load_accounts_file, load_fallback_groups
from policy_sidecar.envoy.render import (
    ACCESS_LOG_DIR,
    CREDENTIALS_DIR,
    EnvoyOptions,
    render_envoy_config,
)
from policy_sidecar.envoy.upstreams import SYSTEM_CA
from policy_sidecar.wiring.settings import Settings, SettingsError, parse_ports, redis_url_setting


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        overrides: dict[str, object] = {}
        if args.config:
            overrides["config_path"] = args.config
        if args.ports:
            overrides["ports"] = parse_ports(args.ports)
        if args.usage_file:
            overrides["usage_file"] = args.usage_file
        if args.access_log_dir:
            overrides["access_log_dir"] = args.access_log_dir
        if args.database_url:
            overrides["database_url"] = args.database_url
        if args.redis_url:
            overrides["redis_url"] = redis_url_setting("REDIS_URL", args.redis_url)
        settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return 2
    from policy_sidecar.wiring.sidecar import run_sidecar

    return run_sidecar(settings)


def _fake_provider(args: argparse.Namespace) -> int:
    from policy_sidecar.fakeprovider import run_fake_provider

    context = None
    if args.tls_cert:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key or None)

    async def main() -> None:
        runner = await run_fake_provider(
            args.host,
            args.port,
            name=args.name,
            ssl_context=context,
            status=args.status,
            status_count=args.status_count,
            chunk_delay=args.chunk_delay,
        )
        scheme = "https" if context else "http"
        print(f"fake provider listening on {scheme}://{args.host}:{args.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def _render_envoy(args: argparse.Namespace) -> int:
    try:
        ports = parse_ports(args.sidecar_ports)
        routes = tuple(_parse_route(r) for r in args.route)
        accounts = load_accounts_file(Path(args.accounts)) if args.accounts else ()
        groups = load_fallback_groups(Path(args.accounts)) if args.accounts else ()
        config = render_envoy_config(
            EnvoyOptions(
                listen_port=args.listen_port,
                admin_port=args.admin_port,
                upstream_port=args.upstream_port,
                upstream_host=args.upstream_host,
                sidecar_ports=ports,
                listen_address=args.listen_address,
                routes=routes,
                cds_path=args.cds_path,
                accounts=accounts,
                fallback_groups=groups,
                credentials_dir=args.credentials_dir,
                system_ca=args.system_ca,
                access_log_dir=args.access_log_dir,
            )
        )
    except (SettingsError, ValueError) as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return 2
    print(config, end="")
    return 0


def _write_credential(args: argparse.Namespace) -> int:
    """Writes a provider key (read from stdin, never from the command line) as the SDS
    file Envoy watches, replacing the old one by a rename so Envoy reloads it."""
    from policy_sidecar.envoy.upstreams import secret_file_text

    directory = Path(args.dir)
    try:
        text = secret_file_text(args.name, sys.stdin.read().strip())
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory.parent / f".{args.name}.{os.getpid()}.tmp"
        staging.write_text(text)
        staging.chmod(0o600)
        os.replace(staging, directory / f"{args.name}.yaml")
    except (OSError, ValueError) as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {directory / (args.name + '.yaml')}")
    return 0


def _parse_route(text: str) -> tuple[str, str, int]:
    name, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not name or not host or not port.isdigit():
        raise ValueError(f"--route {text!r}: expected NAME=HOST:PORT")
    return name, host, int(port)


def _demo(args: argparse.Namespace) -> int:
    from policy_sidecar.cli.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            port=args.port,
            workers=args.workers,
            database_url=args.database_url,
            redis_url=args.redis_url,
            traffic=not args.no_traffic,
        )
    )


def _migrate(args: argparse.Namespace) -> int:
    from policy_sidecar.store.postgres.migrations import MigrationError, migrate

    try:
        dsn = args.database_url or Settings.from_env().database_url
    except SettingsError as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return 2
    if not dsn:
        print(
            "policy-sidecar: set POLICY_SIDECAR_DATABASE_URL or pass --database-url",
            file=sys.stderr,
        )
        return 2
    try:
        applied = asyncio.run(migrate(dsn))
    except (MigrationError, OSError) as exc:
        print(f"policy-sidecar: migrate failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # psycopg errors: connection refused, auth, SQL
        print(f"policy-sidecar: migrate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "nothing to apply: up to date")
    return 0


def _admin(args: argparse.Namespace) -> int:
    from policy_sidecar.admin import AdminSettings, serve_admin

    try:
        settings = AdminSettings.from_env()
        if args.port is not None:
            settings = dataclasses.replace(settings, port=args.port)
        if args.ui_port is not None:
            settings = dataclasses.replace(settings, ui_port=args.ui_port)
    except SettingsError as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    companions = []
    if settings.ui_port >= 0:
        from policy_sidecar.console.companion import console_companion

        companions.append(console_companion(settings))
    asyncio.run(serve_admin(settings, companions))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policy-sidecar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the ext_proc sidecar (standalone with --config, production with --database-url)",
    )
    serve.add_argument("--config", help="standalone YAML file (POLICY_SIDECAR_CONFIG)")
    serve.add_argument(
        "--ports", help="worker ports, e.g. 50051 or 50051-50052 (POLICY_SIDECAR_PORTS)"
    )
    serve.add_argument("--usage-file", help="JSON-lines usage file (POLICY_SIDECAR_USAGE_FILE)")
    serve.add_argument(
        "--access-log-dir",
        help="where Envoy writes the access logs usage is read from"
        " (POLICY_SIDECAR_ACCESS_LOG_DIR)",
    )
    serve.add_argument(
        "--database-url", help="Postgres: production mode (POLICY_SIDECAR_DATABASE_URL)"
    )
    serve.add_argument(
        "--redis-url", help="Redis for counters and invalidations (POLICY_SIDECAR_REDIS_URL)"
    )
    serve.set_defaults(func=_serve)

    fake = sub.add_parser("fake-provider", help="run the fake LLM provider")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8081)
    fake.add_argument("--name", default="fake", help="sent back as the x-fake-provider header")
    fake.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    fake.add_argument("--tls-key", help="the certificate's private key (PEM), if separate")
    fake.add_argument(
        "--status", type=int, help="answer API requests with this error status (e.g. 429)"
    )
    fake.add_argument(
        "--status-count", type=int, help="only the first N requests get --status (default: all)"
    )
    fake.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        help="seconds between stream chunks, as a model streams (header x-fake-chunk-delay"
        " overrides it per request)",
    )
    fake.set_defaults(func=_fake_provider)

    render = sub.add_parser("render-envoy", help="print the Envoy configuration")
    render.add_argument("--listen-address", default="0.0.0.0")
    render.add_argument("--listen-port", type=int, default=10000)
    render.add_argument("--admin-port", type=int, default=9901)
    render.add_argument("--upstream-host", default="127.0.0.1")
    render.add_argument("--upstream-port", type=int, default=8081)
    render.add_argument("--sidecar-ports", default="50051")
    render.add_argument(
        "--route",
        action="append",
        default=[],
        help="an extra upstream cluster a model deployment can route to: NAME=HOST:PORT",
    )
    render.add_argument(
        "--cds-path",
        default=None,
        help="load the provider accounts' clusters from this CDS file (POLICY_SIDECAR_CDS_PATH"
        " of the sidecar); Envoy watches its directory",
    )
    render.add_argument(
        "--accounts",
        help="YAML file with a provider_accounts list: one TLS cluster per account",
    )
    render.add_argument(
        "--credentials-dir",
        default=CREDENTIALS_DIR,
        help="where Envoy reads the accounts' keys (one SDS file per credential_ref)",
    )
    render.add_argument("--system-ca", default=SYSTEM_CA, help="CA bundle to verify providers")
    render.add_argument(
        "--access-log-dir",
        default=ACCESS_LOG_DIR,
        help="where Envoy writes the per-worker access logs the sidecar reads usage from"
        " (POLICY_SIDECAR_ACCESS_LOG_DIR of the sidecar; a volume both mount)",
    )
    render.set_defaults(func=_render_envoy)

    credential = sub.add_parser(
        "write-credential",
        help="write a provider key (from stdin) where Envoy reads it; a live rotation",
    )
    credential.add_argument("name", help="the account's credential_ref")
    credential.add_argument("--dir", default=CREDENTIALS_DIR, help="Envoy's credentials directory")
    credential.set_defaults(func=_write_credential)

    mig = sub.add_parser("migrate", help="apply pending Postgres migrations (safe to run twice)")
    mig.add_argument("--database-url", help="Postgres URL (POLICY_SIDECAR_DATABASE_URL)")
    mig.set_defaults(func=_migrate)

    admin = sub.add_parser("admin", help="run the admin gRPC service (settings: docs/admin.md)")
    admin.add_argument("--port", type=int, help="gRPC port (POLICY_SIDECAR_ADMIN_PORT)")
    admin.add_argument(
        "--ui-port",
        type=int,
        help="serve the web console on this port (POLICY_SIDECAR_UI_PORT; docs/ui.md)",
    )
    admin.set_defaults(func=_admin)

    add_prices_parser(sub)

    demo = sub.add_parser(
        "demo",
        help="run the whole product on this machine: Envoy, the sidecar, the admin service"
        " and console, a fake provider, embedded Postgres and Redis",
    )
    demo.add_argument("--port", type=int, default=10000, help="Envoy listener port (0: any free)")
    demo.add_argument("--workers", type=int, default=2, help="sidecar worker processes")
    demo.add_argument("--database-url", help="use this Postgres instead of an embedded one")
    demo.add_argument("--redis-url", help="use this Redis instead of an embedded one")
    demo.add_argument(
        "--no-traffic", action="store_true", help="send no background traffic through Envoy"
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
