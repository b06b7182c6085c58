from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from policy_sidecar.store.postgres import (
    ApplicationRepository,
    InvalidError,
    NotFoundError,
    PolicyRepository,
    Pool,
    VersionConflictError,
)

from .helpers import RecordingPublisher

pytestmark = pytest.mark.postgres


def strict_validator(policy_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if policy_type == "rate_limit":
        if set(config) != {"requests", "window_seconds"}:
            raise ValueError("rate_limit needs exactly requests and window_seconds")
        return dict(config)
    raise ValueError(f"unknown policy type {policy_type!r}")


@pytest.fixture
def policies(pool: Pool, publisher: RecordingPublisher) -> PolicyRepository:
    return PolicyRepository(pool, publisher, validator=strict_validator)


RL = {"requests": 10, "window_seconds": 60}


async def test_crud_publishes_every_write(
    policies: PolicyRepository, publisher: RecordingPublisher
) -> None:
    p = await policies.create(name="rl", type="rate_limit", config=RL, org_id="acme")
    assert (p.mode, p.enabled, p.priority, p.version, p.config) == ("enforce", True, 0, 1, RL)
    assert await policies.get(p.id) == p
    p2 = await policies.update(p.id, version=1, mode="shadow", config={**RL, "requests": 5})
    assert (p2.mode, p2.config["requests"], p2.version) == ("shadow", 5, 2)
    with pytest.raises(VersionConflictError):
        await policies.update(p.id, version=1, enabled=False)
    with pytest.raises(VersionConflictError):
        await policies.delete(p.id, version=1)
    await policies.delete(p.id, version=2)
    with pytest.raises(NotFoundError):
        await policies.get(p.id)
    with pytest.raises(NotFoundError):
        await policies.delete(p.id)
    assert [(c.action, c.version) for c in publisher.changes] == [
        ("created", 1),
        ("updated", 2),
        ("deleted", 2),
    ]
    assert {c.org_id for c in publisher.changes} == {"acme"}


async def test_config_validated_before_store(policies: PolicyRepository) -> None:
    with pytest.raises(InvalidError, match="config"):
        await policies.create(name="x", type="rate_limit", config={"requests": 1})
    with pytest.raises(InvalidError, match="unknown policy type"):
        await policies.create(name="x", type="nope", config={})
    p = await policies.create(name="x", type="rate_limit", config=RL)
    with pytest.raises(InvalidError):
        await policies.update(p.id, version=1, config={"bad": 1})
    with pytest.raises(NotFoundError):
        await policies.update("pol_missing", version=1, config=RL)
    assert (await policies.get(p.id)).version == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "loud"}, "mode"),
        ({"environment": "dev"}, "check"),
        ({"app_id": "app_x"}, "app_id"),
    ],
)
async def test_invalid_scope(
    policies: PolicyRepository, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidError, match=field):
        await policies.create(name="x", type="rate_limit", config=RL, **kwargs)


async def test_publish_failure_does_not_fail_the_write(pool: Pool) -> None:
    class Broken:
        async def publish(self, change: object) -> None:
            raise RuntimeError("bus down")

    repo = PolicyRepository(pool, Broken(), validator=strict_validator)
    p = await repo.create(name="x", type="rate_limit", config=RL)
    assert (await repo.get(p.id)).name == "x"


async def test_list_and_applicable(policies: PolicyRepository, pool: Pool) -> None:
    app = await ApplicationRepository(pool).create(org_id="acme", name="chat")
    glob = await policies.create(name="global", type="rate_limit", config=RL, priority=1)
    org = await policies.create(name="org", type="rate_limit", config=RL, org_id="acme")
    env = await policies.create(
        name="env", type="rate_limit", config=RL, app_id=app.id, environment="prod", priority=9
    )
    await policies.create(name="other", type="rate_limit", config=RL, org_id="other")
    await policies.create(name="off", type="rate_limit", config=RL, enabled=False)
    got = await policies.applicable(org_id="acme", app_id=app.id, environment="prod")
    # The engine's order: lower priority numbers first (org has the default 0).
    assert [p.id for p in got] == [org.id, glob.id, env.id]
    got = await policies.applicable(org_id="acme", app_id=app.id, environment="dev")
    assert [p.id for p in got] == [org.id, glob.id]
    assert [p.id for p in (await policies.list(org_id="acme")).items] == [org.id]
    assert len((await policies.list(enabled=False)).items) == 1
    page = await policies.list(page_size=4)
    rest = await policies.list(page_size=4, page_token=page.next_page_token)
    assert len(page.items) == 4
    assert len(rest.items) == 1
    assert rest.next_page_token is None
