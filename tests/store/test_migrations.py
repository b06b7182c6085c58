from __future__ import annotations

import asyncio

import psycopg
import pytest

from policy_sidecar.store.postgres.migrations import (
    Migration,
    MigrationError,
    load_migrations,
    migrate,
)

pytestmark = pytest.mark.postgres

TABLES = {
    "applications",
    "application_configs",
    "api_keys",
    "models",
    "policies",
    "usage_metrics",
    "usage_rollup_hourly",
    "usage_rollup_daily",
    "usage_denials_hourly",
    "schema_migrations",
}


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def test_shipped_migrations_are_ordered_and_named() -> None:
    names = [m.name for m in load_migrations()]
    assert names == sorted(names)
    assert names[:2] == ["0001_core.sql", "0002_usage.sql"]


async def test_from_empty_then_rerun_is_a_noop(schema_dsn: str) -> None:
    applied = await migrate(schema_dsn)
    assert applied == [m.name for m in load_migrations()]
    assert _tables(schema_dsn) >= TABLES
    assert await migrate(schema_dsn) == []


async def test_concurrent_runs_apply_each_migration_once(schema_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(schema_dsn) for _ in range(4)))
    applied = [name for r in results for name in r]
    assert sorted(applied) == [m.name for m in load_migrations()]
    with psycopg.connect(schema_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert row == (len(load_migrations()),)


async def test_changed_applied_migration_is_refused(schema_dsn: str) -> None:
    first = load_migrations()
    await migrate(schema_dsn)
    edited = [Migration(first[0].name, first[0].sql + "\n-- edited\n"), *first[1:]]
    with pytest.raises(MigrationError, match="checksum"):
        await migrate(schema_dsn, edited)


async def test_unknown_applied_migration_is_refused(schema_dsn: str) -> None:
    await migrate(schema_dsn)
    with pytest.raises(MigrationError, match="does not know"):
        await migrate(schema_dsn, load_migrations()[:1])


async def test_failing_migration_rolls_back_and_is_not_recorded(schema_dsn: str) -> None:
    bad = [*load_migrations(), Migration("9999_bad.sql", "CREATE TABLE x (a int); SELECT 1/0;")]
    with pytest.raises(psycopg.errors.DivisionByZero):
        await migrate(schema_dsn, bad)
    assert "x" not in _tables(schema_dsn)
    assert await migrate(schema_dsn) == []  # the good ones were committed
