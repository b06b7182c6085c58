from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from policy_sidecar.admin.v1 import applications_pb2 as pb

from .conftest import Client
from .helpers import AUTH, error_info, fails, field_violations

pytestmark = pytest.mark.postgres


async def create(client: Client, name: str, org: str = "acme") -> pb.Application:
    response = await client.apps.CreateApplication(
        pb.CreateApplicationRequest(application=pb.Application(org_id=org, name=name)),
        metadata=AUTH,
    )
    return response.application


async def test_create_get_and_invalidation(client: Client, publisher) -> None:
    request = pb.CreateApplicationRequest(
        application=pb.Application(
            org_id="acme", name="chatbot", description="d", labels={"team": "ml"}
        )
    )
    created = (await client.apps.CreateApplication(request, metadata=AUTH)).application
    assert created.id.startswith("app_") and created.version == 1
    assert created.labels == {"team": "ml"} and created.HasField("create_time")
    got = await client.apps.GetApplication(pb.GetApplicationRequest(id=created.id), metadata=AUTH)
    assert got.application == created
    assert [(c.kind, c.action, c.id) for c in publisher.changes] == [
        ("application", "created", created.id)
    ]


@pytest.mark.parametrize(
    ("application", "violations"),
    [
        (pb.Application(), {"application.org_id": "required", "application.name": "required"}),
        (pb.Application(org_id="acme", name="  "), {"application.name": "required"}),
    ],
)
async def test_create_field_violations(
    client: Client, application: pb.Application, violations: dict[str, str]
) -> None:
    exc = await fails(
        client.apps.CreateApplication(
            pb.CreateApplicationRequest(application=application), metadata=AUTH
        )
    )
    assert field_violations(exc) == violations


async def test_duplicate_and_not_found(client: Client) -> None:
    await create(client, "dup")
    exc = await fails(
        client.apps.CreateApplication(
            pb.CreateApplicationRequest(application=pb.Application(org_id="acme", name="dup")),
            metadata=AUTH,
        )
    )
    assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
    exc = await fails(
        client.apps.GetApplication(pb.GetApplicationRequest(id="app_nope"), metadata=AUTH)
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND and "app_nope" in (exc.details() or "")


async def test_pagination_and_filters(client: Client) -> None:
    ids = sorted([(await create(client, f"a{i}")).id for i in range(5)])
    await create(client, "other", org="globex")
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await client.apps.ListApplications(
            pb.ListApplicationsRequest(org_id="acme", page_size=2, page_token=token),
            metadata=AUTH,
        )
        seen += [a.id for a in page.applications]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids and pages == 3
    # A token is opaque: a guessed id, another list's token or garbage is refused, never
    # silently taken as a position in the list.
    for bad in (ids[1], "!!not-a-token", "cG9saWN5fGEx"):  # the last: "policy|a1"
        exc = await fails(
            client.apps.ListApplications(pb.ListApplicationsRequest(page_token=bad), metadata=AUTH)
        )
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(exc)) == {"page_token"}
    exc = await fails(
        client.apps.ListApplications(pb.ListApplicationsRequest(page_size=501), metadata=AUTH)
    )
    assert set(field_violations(exc)) == {"page_size"}


async def test_update_mask_and_version_conflict(client: Client) -> None:
    app = await create(client, "orig")
    update = pb.Application(
        id=app.id, version=app.version, name="renamed", description="new", labels={"x": "y"}
    )
    updated = (
        await client.apps.UpdateApplication(
            pb.UpdateApplicationRequest(
                application=update, update_mask=field_mask_pb2.FieldMask(paths=["description"])
            ),
            metadata=AUTH,
        )
    ).application
    # Only the masked field changed.
    assert (updated.name, updated.description, dict(updated.labels)) == ("orig", "new", {})
    assert updated.version == app.version + 1
    stale = await fails(
        client.apps.UpdateApplication(
            pb.UpdateApplicationRequest(
                application=update, update_mask=field_mask_pb2.FieldMask(paths=["name"])
            ),
            metadata=AUTH,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    info = error_info(stale)
    assert info.reason == "VERSION_CONFLICT" and info.metadata["current_version"] == "2"


@pytest.mark.parametrize(
    ("application", "paths", "violations"),
    [
        (pb.Application(version=1), ["name"], {"application.id": "required"}),
        (pb.Application(id="app_x"), ["name"], {"application.version": "required"}),
        (pb.Application(id="app_x", version=1), [], {"update_mask.paths"}),
        (pb.Application(id="app_x", version=1), ["org_id"], {"update_mask.paths"}),
        (pb.Application(id="app_x", version=1), ["name"], {"application.name"}),
    ],
)
async def test_update_validation(
    client: Client, application: pb.Application, paths: list[str], violations: object
) -> None:
    exc = await fails(
        client.apps.UpdateApplication(
            pb.UpdateApplicationRequest(
                application=application, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            metadata=AUTH,
        )
    )
    found = field_violations(exc)
    assert (found if isinstance(violations, dict) else set(found)) == violations


async def test_archive(client: Client) -> None:
    app = await create(client, "old")
    archived = (
        await client.apps.ArchiveApplication(
            pb.ArchiveApplicationRequest(id=app.id, version=app.version), metadata=AUTH
        )
    ).application
    assert archived.HasField("archive_time")
    live = await client.apps.ListApplications(pb.ListApplicationsRequest(), metadata=AUTH)
    assert app.id not in [a.id for a in live.applications]
    everything = await client.apps.ListApplications(
        pb.ListApplicationsRequest(include_archived=True), metadata=AUTH
    )
    assert app.id in [a.id for a in everything.applications]
    exc = await fails(
        client.apps.ArchiveApplication(
            pb.ArchiveApplicationRequest(id=app.id, version=app.version), metadata=AUTH
        )
    )
    assert exc.code() == grpc.StatusCode.ABORTED
