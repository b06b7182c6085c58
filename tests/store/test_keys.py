from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policy_sidecar.identity.keys import hash_api_key
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationConfigRepository,
    ApplicationRepository,
    InvalidError,
    NotFoundError,
    Pool,
    VersionConflictError,
)
from policy_sidecar.store.records import Application

from .helpers import RecordingPublisher

pytestmark = pytest.mark.postgres


@pytest.fixture
def keys(pool: Pool, publisher: RecordingPublisher) -> ApiKeyRepository:
    return ApiKeyRepository(pool, publisher)


@pytest.fixture
async def app(pool: Pool) -> Application:
    return await ApplicationRepository(pool).create(org_id="acme", name="chat")


def test_hash_api_key_is_sha256_hex() -> None:
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


async def test_create_returns_secret_once_and_stores_only_hash(
    keys: ApiKeyRepository, app: Application, publisher: RecordingPublisher, pool: Pool
) -> None:
    created = await keys.create(app_id=app.id, environment="production", name="ci")
    secret, key = created.secret, created.key
    assert secret.startswith("ps_production_")
    assert len(secret) > 50
    assert key.prefix == secret[: len("ps_production_") + 6]
    assert key.key_hash == hash_api_key(secret)
    assert await keys.get_by_hash(hash_api_key(secret)) == key
    assert await keys.get(key.id) == key
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM api_keys")
        assert all(secret not in str(v) for v in (await cur.fetchone() or ()))
    assert publisher.changes[-1].key_hash == key.key_hash
    other = await keys.create(app_id=app.id, environment="production")
    assert other.secret != secret


async def test_create_for_missing_or_archived_app(
    keys: ApiKeyRepository, app: Application, pool: Pool
) -> None:
    with pytest.raises(NotFoundError):
        await keys.create(app_id="app_missing", environment="dev")
    await ApplicationRepository(pool).archive(app.id, version=app.version)
    with pytest.raises(NotFoundError):
        await keys.create(app_id=app.id, environment="dev")
    with pytest.raises(InvalidError):
        await keys.create(app_id=app.id, environment="dev", expires_at=datetime(2030, 1, 1))


async def test_revoke_update_delete(keys: ApiKeyRepository, app: Application) -> None:
    key = (await keys.create(app_id=app.id, environment="dev")).key
    now = datetime.now(UTC)
    assert key.usable_at(now)
    expires = now + timedelta(days=1)
    key = await keys.update(key.id, version=1, name="renamed", expires_at=expires)
    assert (key.version, key.name, key.expires_at) == (2, "renamed", expires)
    assert not key.usable_at(expires)
    revoked = await keys.revoke(key.id, version=2)
    assert revoked.revoked_at is not None
    assert not revoked.usable_at(datetime.now(UTC))
    again = await keys.revoke(key.id, version=3)
    assert again.revoked_at == revoked.revoked_at
    assert (await keys.list(app_id=app.id)).items == ()
    assert len((await keys.list(app_id=app.id, include_revoked=True)).items) == 1
    with pytest.raises(VersionConflictError):
        await keys.delete(key.id, version=1)
    await keys.delete(key.id, version=4)
    with pytest.raises(NotFoundError):
        await keys.get(key.id)
    with pytest.raises(NotFoundError):
        await keys.delete(key.id)


async def test_list_filters_and_pages(keys: ApiKeyRepository, app: Application) -> None:
    ids = sorted([(await keys.create(app_id=app.id, environment="dev")).key.id for _ in range(3)])
    await keys.create(app_id=app.id, environment="production")
    first = await keys.list(app_id=app.id, environment="dev", page_size=2)
    second = await keys.list(
        app_id=app.id, environment="dev", page_size=2, page_token=first.next_page_token
    )
    assert [k.id for k in first.items + second.items] == ids
    assert second.next_page_token is None


async def test_record_last_used_writes_at_most_once_per_granularity(
    keys: ApiKeyRepository, app: Application
) -> None:
    a = (await keys.create(app_id=app.id, environment="dev")).key
    b = (await keys.create(app_id=app.id, environment="dev")).key
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert await keys.record_last_used({a.id: t0, b.id: t0}) == 2
    assert await keys.record_last_used({a.id: t0 + timedelta(seconds=30)}) == 0
    assert await keys.record_last_used({a.id: t0 + timedelta(minutes=2), "key_x": t0}) == 1
    assert (await keys.get(a.id)).last_used_at == t0 + timedelta(minutes=2)
    assert (await keys.get(a.id)).version == 1  # not a config change
    assert await keys.record_last_used({}) == 0


async def test_resolve_only_usable_keys(
    keys: ApiKeyRepository, app: Application, pool: Pool
) -> None:
    created = await keys.create(app_id=app.id, environment="dev")
    h = hash_api_key(created.secret)
    identity = await keys.resolve(h)
    assert identity is not None
    assert (identity.key_id, identity.org_id, identity.app_id, identity.environment) == (
        created.key.id, "acme", app.id, "dev",
    )  # fmt: skip
    assert await keys.resolve(hash_api_key("ps_dev_unknown")) is None
    configs = ApplicationConfigRepository(pool)
    await configs.create(app_id=app.id, environment="dev", default_model="m")
    assert await keys.resolve(h) == replace(identity, default_model="m")
    await configs.update(app.id, "dev", version=1, enabled=False)
    # Not "unknown": the sidecar must say the environment is disabled.
    assert await keys.resolve(h) == replace(identity, default_model="m", environment_enabled=False)
    await configs.update(app.id, "dev", version=2, enabled=True)
    past = await keys.create(
        app_id=app.id, environment="dev", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert await keys.resolve(hash_api_key(past.secret)) is None
    await ApplicationRepository(pool).archive(app.id, version=app.version)
    assert await keys.resolve(h) is None
