"""The audit log: every admin write recorded with its token's name, method, object and
before/after snapshots (secrets never stored), readable by read-only tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from policy_sidecar.admin.v1 import api_keys_pb2 as keys
from policy_sidecar.admin.v1 import applications_pb2 as apps
from policy_sidecar.admin.v1 import audit_pb2 as pb
from policy_sidecar.admin.v1 import audit_pb2_grpc
from policy_sidecar.identity.keys import hash_api_key
from policy_sidecar.store.postgres import ApiKeyRepository, ApplicationRepository, Pool
from policy_sidecar.store.postgres.audit import write_transaction

from .conftest import Client
from .helpers import AUTH, READ, fails, field_violations

pytestmark = pytest.mark.postgres

SERVICE = "/policy_sidecar.admin.v1."


async def events(client: Client, **fields: Any) -> list[pb.AuditEvent]:
    stub = audit_pb2_grpc.AuditServiceStub(client.channel)
    response = await stub.ListAuditEvents(pb.ListAuditEventsRequest(**fields), metadata=READ)
    return list(response.events)


async def new_app(client: Client, name: str = "bot") -> apps.Application:
    response = await client.apps.CreateApplication(
        apps.CreateApplicationRequest(application=apps.Application(org_id="acme", name=name)),
        metadata=AUTH,
    )
    return response.application


async def test_create_and_update_recorded_with_token_name_and_snapshots(client: Client) -> None:
    app = await new_app(client)
    updated = await client.apps.UpdateApplication(
        apps.UpdateApplicationRequest(
            application=apps.Application(id=app.id, version=app.version, name="renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=AUTH,
    )
    # Newest first; the read-only token ("viewer") reads them.
    update, create = await events(client)
    assert (create.actor, create.action, create.object_type, create.object_id) == (
        "ops",
        "create",
        "application",
        app.id,
    )
    assert create.method == SERVICE + "ApplicationService/CreateApplication"
    assert create.before_json == ""
    assert json.loads(create.after_json)["name"] == "bot"
    assert update.method == SERVICE + "ApplicationService/UpdateApplication"
    assert (update.actor, update.action) == ("ops", "update")
    before, after = json.loads(update.before_json), json.loads(update.after_json)
    assert (before["name"], before["version"]) == ("bot", app.version)
    assert (after["name"], after["version"]) == ("renamed", updated.application.version)
    assert int(update.id) > int(create.id)
    assert update.event_time.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)


async def test_api_key_secret_and_hash_never_stored(client: Client, pool: Pool) -> None:
    app = await new_app(client)
    created = await client.keys.CreateApiKey(
        keys.CreateApiKeyRequest(app_id=app.id, environment="prod", name="ci"), metadata=AUTH
    )
    await client.keys.RevokeApiKey(
        keys.RevokeApiKeyRequest(id=created.api_key.id, version=created.api_key.version),
        metadata=AUTH,
    )
    revoke, create = await events(client, object_type="api_key", object_id=created.api_key.id)
    assert [create.action, revoke.action] == ["create", "update"]
    assert "key_hash" not in json.loads(create.after_json)
    assert json.loads(revoke.after_json)["revoked_at"] is not None
    async with pool.connection() as conn:
        dump = await (await conn.execute("SELECT audit_events::text FROM audit_events")).fetchall()
    stored = "\n".join(row[0] for row in dump)
    assert created.secret not in stored and hash_api_key(created.secret) not in stored


async def test_failed_write_leaves_no_event(client: Client) -> None:
    app = await new_app(client)
    stale = await fails(
        client.apps.UpdateApplication(
            apps.UpdateApplicationRequest(
                application=apps.Application(id=app.id, version=app.version + 5, name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=AUTH,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    assert [e.action for e in await events(client)] == ["create"]


async def insert_then_fail(pool: Pool) -> None:
    async with write_transaction(pool) as conn:
        await conn.execute("INSERT INTO applications (org_id, name) VALUES ('acme', 'gone')")
        raise RuntimeError("after the insert, before the commit")


async def test_event_rolls_back_with_the_change(pool: Pool) -> None:
    with pytest.raises(RuntimeError):
        await insert_then_fail(pool)
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM audit_events")).fetchone()
        apps_row = await (await conn.execute("SELECT count(*) FROM applications")).fetchone()
    assert row == (0,) and apps_row == (0,)


async def test_writes_outside_the_api_are_system_and_last_used_is_not_audited(
    client: Client, pool: Pool
) -> None:
    app = await ApplicationRepository(pool).create(org_id="acme", name="seeded")
    key = await ApiKeyRepository(pool).create(app_id=app.id, environment="prod")
    await ApiKeyRepository(pool).record_last_used({key.key.id: datetime.now(UTC)})
    listed = await events(client)
    assert [(e.actor, e.method, e.object_type) for e in listed] == [
        ("system", "", "api_key"),
        ("system", "", "application"),
    ]


async def test_filters_and_pagination(client: Client) -> None:
    first = await new_app(client, "one")
    second = await new_app(client, "two")
    third = await new_app(client, "three")
    only = await events(client, object_type="application", object_id=second.id)
    assert [e.object_id for e in only] == [second.id]

    seen: list[str] = []
    token = ""
    stub = audit_pb2_grpc.AuditServiceStub(client.channel)
    while True:
        page = await stub.ListAuditEvents(
            pb.ListAuditEventsRequest(page_size=1, page_token=token), metadata=READ
        )
        assert len(page.events) == 1
        seen.append(page.events[0].object_id)
        token = page.next_page_token
        if not token:
            break
    assert seen == [third.id, second.id, first.id]

    now = datetime.now(UTC)
    past, future = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    past.FromDatetime(now - timedelta(hours=1))
    future.FromDatetime(now + timedelta(hours=1))
    assert len(await events(client, start_time=past, end_time=future)) == 3
    assert await events(client, start_time=future) == []
    assert await events(client, end_time=past) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListAuditEventsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListAuditEventsRequest(page_token="-1"), "page_token"),
        (pb.ListAuditEventsRequest(page_token="99999999999999999999999"), "page_token"),
        (pb.ListAuditEventsRequest(page_size=501), "page_size"),
        (pb.ListAuditEventsRequest(object_type="table"), "object_type"),
        (pb.ListAuditEventsRequest(object_id="app_1"), "object_id"),
        (
            pb.ListAuditEventsRequest(
                start_time=timestamp_pb2.Timestamp(seconds=20),
                end_time=timestamp_pb2.Timestamp(seconds=10),
            ),
            "end_time",
        ),
        (
            pb.ListAuditEventsRequest(start_time=timestamp_pb2.Timestamp(seconds=-(10**12))),
            "start_time",
        ),
    ],
)
async def test_bad_requests_name_the_field(
    client: Client, request_: pb.ListAuditEventsRequest, field: str
) -> None:
    stub = audit_pb2_grpc.AuditServiceStub(client.channel)
    error = await fails(stub.ListAuditEvents(request_, metadata=READ))
    assert field in field_violations(error)


async def test_needs_a_token(client: Client) -> None:
    stub = audit_pb2_grpc.AuditServiceStub(client.channel)
    error = await fails(stub.ListAuditEvents(pb.ListAuditEventsRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
