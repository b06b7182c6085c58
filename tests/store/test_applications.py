from __future__ import annotations

import asyncio

import pytest

from policy_sidecar.store.postgres import (
    AlreadyExistsError,
    ApplicationConfigRepository,
    ApplicationRepository,
    InvalidError,
    NotFoundError,
    Pool,
    VersionConflictError,
)

from .helpers import RecordingPublisher

pytestmark = pytest.mark.postgres


@pytest.fixture
def apps(pool: Pool, publisher: RecordingPublisher) -> ApplicationRepository:
    return ApplicationRepository(pool, publisher)


@pytest.fixture
def configs(pool: Pool, publisher: RecordingPublisher) -> ApplicationConfigRepository:
    return ApplicationConfigRepository(pool, publisher)


async def test_create_get_and_publish(
    apps: ApplicationRepository, publisher: RecordingPublisher
) -> None:
    app = await apps.create(org_id="acme", name="chat", description="d", labels={"team": "x"})
    assert app.id.startswith("app_")
    assert (app.version, app.labels, app.archived) == (1, {"team": "x"}, False)
    assert await apps.get(app.id) == app
    assert [(c.kind, c.action, c.id) for c in publisher.changes] == [
        ("application", "created", app.id)
    ]


async def test_name_unique_per_org_among_live_apps(apps: ApplicationRepository) -> None:
    app = await apps.create(org_id="acme", name="chat")
    await apps.create(org_id="other", name="chat")
    with pytest.raises(AlreadyExistsError):
        await apps.create(org_id="acme", name="chat")
    await apps.archive(app.id, version=app.version)
    await apps.create(org_id="acme", name="chat")  # the name is free again


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"org_id": "", "name": "x"}, "org_id"),
        ({"org_id": "o", "name": ""}, "name"),
        ({"org_id": "o", "name": "x", "labels": {"k": 1}}, "labels"),
    ],
)
async def test_create_invalid(
    apps: ApplicationRepository, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidError) as info:
        await apps.create(**kwargs)  # type: ignore[arg-type]
    assert field in str(info.value)


async def test_update_with_optimistic_concurrency(apps: ApplicationRepository) -> None:
    app = await apps.create(org_id="acme", name="chat")
    updated = await apps.update(app.id, version=1, description="new", labels={"a": "b"})
    assert (updated.version, updated.description, updated.name) == (2, "new", "chat")
    assert updated.updated_at >= app.updated_at
    with pytest.raises(VersionConflictError) as info:
        await apps.update(app.id, version=1, name="stale")
    assert (info.value.expected, info.value.actual) == (1, 2)
    await apps.create(org_id="acme", name="taken")
    with pytest.raises(AlreadyExistsError):
        await apps.update(app.id, version=2, name="taken")
    with pytest.raises(NotFoundError):
        await apps.update("app_missing", version=1, name="x")
    with pytest.raises(NotFoundError):
        await apps.get("app_missing")


async def test_archive_hides_from_list(apps: ApplicationRepository) -> None:
    a = await apps.create(org_id="acme", name="a")
    b = await apps.create(org_id="acme", name="b")
    archived = await apps.archive(a.id, version=a.version)
    assert archived.archived
    assert archived.version == 2
    assert [x.id for x in (await apps.list(org_id="acme")).items] == [b.id]
    listed = await apps.list(org_id="acme", include_archived=True)
    assert {x.id for x in listed.items} == {a.id, b.id}


@pytest.mark.parametrize(("count", "page_size"), [(0, 3), (1, 1), (5, 5), (6, 5), (7, 2)])
async def test_keyset_pagination(apps: ApplicationRepository, count: int, page_size: int) -> None:
    created = {(await apps.create(org_id="acme", name=f"n{i}")).id for i in range(count)}
    await apps.create(org_id="other", name="x")
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await apps.list(org_id="acme", page_size=page_size, page_token=token)
        pages += 1
        assert len(page.items) <= page_size
        seen += [a.id for a in page.items]
        token = page.next_page_token
        if token is None:
            break
    assert seen == sorted(created)
    assert pages == max(1, -(-count // page_size))


@pytest.mark.parametrize("page_size", [0, 501])
async def test_page_size_bounds(apps: ApplicationRepository, page_size: int) -> None:
    with pytest.raises(InvalidError, match="page_size"):
        await apps.list(page_size=page_size)


async def test_config_crud(
    apps: ApplicationRepository, configs: ApplicationConfigRepository
) -> None:
    app = await apps.create(org_id="acme", name="chat")
    cfg = await configs.create(
        app_id=app.id, environment="production", default_model="gpt-4o", settings={"a": [1]}
    )
    assert (cfg.version, cfg.enabled, cfg.settings) == (1, True, {"a": [1]})
    await configs.create(app_id=app.id, environment="dev")
    with pytest.raises(AlreadyExistsError):
        await configs.create(app_id=app.id, environment="dev")
    updated = await configs.update(app.id, "production", version=1, enabled=False, settings={})
    assert (updated.version, updated.enabled, updated.settings) == (2, False, {})
    assert (await configs.update(app.id, "production", version=2)).version == 3
    with pytest.raises(VersionConflictError):
        await configs.update(app.id, "production", version=2, default_model=None)
    page = await configs.list(app_id=app.id, page_size=1)
    assert [c.environment for c in page.items] == ["dev"]
    page = await configs.list(app_id=app.id, page_size=1, page_token=page.next_page_token)
    assert [c.environment for c in page.items] == ["production"]
    assert page.next_page_token is None
    with pytest.raises(VersionConflictError):
        await configs.delete(app.id, "dev", version=7)
    await configs.delete(app.id, "dev", version=1)
    with pytest.raises(NotFoundError):
        await configs.get(app.id, "dev")
    with pytest.raises(NotFoundError):
        await configs.delete(app.id, "dev")


@pytest.mark.parametrize(
    ("environment", "settings", "field"),
    [("Prod!", {}, "environment"), ("dev", {"x": float("nan")}, "settings")],
)
async def test_config_invalid(
    apps: ApplicationRepository,
    configs: ApplicationConfigRepository,
    environment: str,
    settings: dict[str, object],
    field: str,
) -> None:
    app = await apps.create(org_id="acme", name="chat")
    with pytest.raises(InvalidError) as info:
        await configs.create(app_id=app.id, environment=environment, settings=settings)
    assert field in str(info.value)


async def test_config_needs_live_application(
    apps: ApplicationRepository, configs: ApplicationConfigRepository
) -> None:
    with pytest.raises(NotFoundError):
        await configs.create(app_id="app_missing", environment="dev")
    app = await apps.create(org_id="acme", name="chat")
    await apps.archive(app.id, version=1)
    with pytest.raises(NotFoundError):
        await configs.create(app_id=app.id, environment="dev")


async def test_concurrent_updates_at_same_version_exactly_one_wins(
    apps: ApplicationRepository,
) -> None:
    app = await apps.create(org_id="acme", name="chat")
    results = await asyncio.gather(
        *(apps.update(app.id, version=1, description=f"d{i}") for i in range(4)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, VersionConflictError) for r in results if r not in winners)
    assert (await apps.get(app.id)).version == 2


async def test_database_refusals_never_quote_the_row(apps: ApplicationRepository) -> None:
    # A CHECK violation's DETAIL is "Failing row contains (...)": every column of the
    # row. The domain error names the constraint only.
    with pytest.raises(InvalidError) as info:
        await apps.create(org_id="org-secret", name="n" * 201, description="desc-secret")
    assert "applications_name_check" in str(info.value)
    for leaked in ("Failing row", "org-secret", "desc-secret", "n" * 201):
        assert leaked not in str(info.value)
    # NUL (refused by the driver before Postgres) and a unique violation: same rule.
    with pytest.raises(InvalidError) as info:
        await apps.create(org_id="o", name="a\x00b", description="desc-secret")
    assert "desc-secret" not in str(info.value)
    await apps.create(org_id="org-secret", name="dup-secret")
    with pytest.raises(AlreadyExistsError) as dup:
        await apps.create(org_id="org-secret", name="dup-secret")
    assert "dup-secret" not in str(dup.value) and "org-secret" not in str(dup.value)
