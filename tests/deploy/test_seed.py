"""deploy/compose/seed.sql against the real migrated schema: the compose demo key
resolves to the demo application, and the seeded models and policy load the way the
production sidecar loads them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from policy_sidecar.store.policy_cache import _rows, definition_from
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ModelRepository,
    PolicyRepository,
    migrate,
    open_pool,
)

from . import contract
from .helpers import render

pytestmark = pytest.mark.postgres

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def schema_dsn() -> Iterator[str]:
    schema = f"t_seed_{uuid.uuid4().hex[:12]}"
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


async def test_seed_creates_a_usable_demo_key(schema_dsn: str) -> None:
    await migrate(schema_dsn)
    seed = contract.SEED_FILE.read_text()
    async with await psycopg.AsyncConnection.connect(schema_dsn, autocommit=True) as conn:
        await conn.execute(seed.encode())
        await conn.execute(seed.encode())  # twice: idempotent

    pool = await open_pool(schema_dsn, min_size=1, max_size=2)
    try:
        identity = await ApiKeyRepository(pool).resolve(contract.COMPOSE_DEMO_KEY_SHA256)
        assert identity is not None
        assert (identity.app_id, identity.environment) == ("app_compose_demo", "dev")

        policies = await PolicyRepository(pool).applicable(
            org_id=identity.org_id, app_id=identity.app_id, environment=identity.environment
        )
        definitions = [definition_from(row) for row in _rows(policies)]
        assert [d.type for d in definitions if d is not None] == ["model_allowlist"]

        page = await ModelRepository(pool).list(page_size=10)
        clusters = {m.name: m.account or m.upstream_cluster for m in page.items}
    finally:
        await pool.close()
    # Every seeded model routes to a cluster the compose Envoy config defines.
    envoy = render(contract.COMPOSE_RENDER_ARGS)
    assert clusters == {
        "gpt-4o-mini": "upstream",
        "gpt-4o": "secondary",
        "gpt-4o-mini-openai": "openai-prod",  # the provider account's cluster
    }
    for cluster in clusters.values():
        assert f"- name: {cluster}\n" in envoy
