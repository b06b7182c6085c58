"""``policy-sidecar prices import FILE`` and ``prices list``: the versioned price book
in Postgres (docs/providers.md, "Price versions")."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from policy_sidecar.wiring.settings import Settings, SettingsError

__all__ = ["add_prices_parser"]


def add_prices_parser(sub: Any) -> None:
    prices = sub.add_parser("prices", help="the versioned price book (Postgres)")
    verbs = prices.add_subparsers(dest="verb", required=True)
    imp = verbs.add_parser("import", help="load a price book (YAML or JSON) into the models")
    imp.add_argument("file")
    imp.add_argument("--database-url", help="Postgres URL (POLICY_SIDECAR_DATABASE_URL)")
    imp.set_defaults(func=_import)
    lst = verbs.add_parser("list", help="list price versions, oldest first")
    lst.add_argument("--model", help="only this model's versions")
    lst.add_argument("--database-url", help="Postgres URL (POLICY_SIDECAR_DATABASE_URL)")
    lst.set_defaults(func=_list)


def _dsn(args: argparse.Namespace) -> str | None:
    try:
        dsn = args.database_url or Settings.from_env().database_url
    except SettingsError as exc:
        print(f"policy-sidecar: {exc}", file=sys.stderr)
        return None
    if not dsn:
        print(
            "policy-sidecar: set POLICY_SIDECAR_DATABASE_URL or pass --database-url",
            file=sys.stderr,
        )
    return dsn or None


def _import(args: argparse.Namespace) -> int:
    from policy_sidecar.store.price_book_file import PriceBookError, parse_price_book

    dsn = _dsn(args)
    if dsn is None:
        return 2
    try:
        entries = parse_price_book(Path(args.file).read_text(), source=args.file)
    except (OSError, PriceBookError) as exc:
        print(f"policy-sidecar: prices import: {exc}", file=sys.stderr)
        return 2

    async def run() -> list[str]:
        from policy_sidecar.store.postgres import ModelRepository, open_pool
        from policy_sidecar.store.postgres.audit import AuditActor, acting_as
        from policy_sidecar.store.postgres.price_book import PriceBookRepository

        pool = await open_pool(dsn)
        try:
            # The audit log's "who" for these model updates (docs/admin.md, "Audit log").
            with acting_as(AuditActor("policy-sidecar prices import")):
                return await PriceBookRepository(pool, ModelRepository(pool)).import_book(entries)
        finally:
            await pool.close()

    try:
        changed = asyncio.run(run())
    except Exception as exc:  # not deployed, a concurrent change, connection errors
        print(f"policy-sidecar: prices import failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("new price versions: " + ", ".join(changed) if changed else "no price changed")
    return 0


def _list(args: argparse.Namespace) -> int:
    dsn = _dsn(args)
    if dsn is None:
        return 2

    async def run() -> list[Any]:
        from policy_sidecar.store.postgres import open_pool
        from policy_sidecar.store.postgres.deployments import ModelRepository
        from policy_sidecar.store.postgres.price_book import PriceBookRepository

        pool = await open_pool(dsn)
        try:
            return await PriceBookRepository(pool, ModelRepository(pool)).versions(args.model)
        finally:
            await pool.close()

    try:
        versions = asyncio.run(run())
    except Exception as exc:
        print(f"policy-sidecar: prices list failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for v in versions:
        prices = (v.input_price_per_mtok, v.cached_input_price_per_mtok, v.output_price_per_mtok)
        shown = " ".join("null" if p is None else format(p.normalize(), "f") for p in prices)
        extra = _extra_prices(v)
        line = f"{v.version}\t{v.effective_at.isoformat()}\t{v.model_name}\t{shown}"
        print(line + (f"\t{extra}" if extra else ""))
    return 0


def _extra_prices(v: Any) -> str:
    """The prices beyond tokens a version sets, ``name=value`` separated by spaces."""
    from policy_sidecar.store.records import EXTRA_PRICE_DECIMALS

    parts = [
        f"{name}={format(value.normalize(), 'f')}"
        for name in EXTRA_PRICE_DECIMALS
        if (value := getattr(v, name)) is not None
    ]
    if v.long_context_threshold_tokens is not None:
        parts.append(f"long_context_threshold_tokens={v.long_context_threshold_tokens}")
    parts += [f"image_prices[{k}]={p}" for k, p in sorted(v.image_prices.items())]
    return " ".join(parts)
