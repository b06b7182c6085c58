"""Fixtures for the Postgres store tests: every test gets its own schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from policy_sidecar.store.postgres.migrations import migrate
from policy_sidecar.store.postgres.pool import Pool, open_pool

from .helpers import RecordingPublisher

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def schema_dsn() -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(BASE_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"Postgres not reachable at {BASE_DSN} (.ci/run starts it): {exc}")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(BASE_DSN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def dsn(schema_dsn: str) -> str:
    """A migrated schema."""
    await migrate(schema_dsn)
    return schema_dsn


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[Pool]:
    p = await open_pool(dsn, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()
