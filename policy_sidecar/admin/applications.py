"""ApplicationService."""

from __future__ import annotations

from typing import Any

import grpc

from policy_sidecar.admin.convert import mask_paths, page_size, timestamp
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import applications_pb2 as pb
from policy_sidecar.store.postgres import ApplicationRepository
from policy_sidecar.store.records import Application

__all__ = ["ApplicationServicer", "application_message"]

Context = grpc.aio.ServicerContext[Any, Any]
_MUTABLE = ("name", "description", "labels")


def application_message(app: Application) -> pb.Application:
    return pb.Application(
        id=app.id,
        org_id=app.org_id,
        name=app.name,
        description=app.description,
        labels={str(k): str(v) for k, v in app.labels.items()},
        version=app.version,
        create_time=timestamp(app.created_at),
        update_time=timestamp(app.updated_at),
        archive_time=timestamp(app.archived_at),
    )


class ApplicationServicer:
    def __init__(self, repo: ApplicationRepository) -> None:
        self._repo = repo

    async def CreateApplication(
        self, request: pb.CreateApplicationRequest, context: Context
    ) -> pb.CreateApplicationResponse:
        app = request.application
        v = Violations()
        v.require(app.org_id, "application.org_id")
        v.require(app.name.strip(), "application.name")
        v.check()
        created = await self._repo.create(
            org_id=app.org_id, name=app.name, description=app.description, labels=dict(app.labels)
        )
        return pb.CreateApplicationResponse(application=application_message(created))

    async def GetApplication(
        self, request: pb.GetApplicationRequest, context: Context
    ) -> pb.GetApplicationResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        return pb.GetApplicationResponse(
            application=application_message(await self._repo.get(request.id))
        )

    async def ListApplications(
        self, request: pb.ListApplicationsRequest, context: Context
    ) -> pb.ListApplicationsResponse:
        page = await self._repo.list(
            org_id=request.org_id or None,
            include_archived=request.include_archived,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListApplicationsResponse(
            applications=[application_message(a) for a in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def UpdateApplication(
        self, request: pb.UpdateApplicationRequest, context: Context
    ) -> pb.UpdateApplicationResponse:
        app = request.application
        v = Violations()
        v.require(app.id, "application.id")
        v.require(app.version, "application.version")
        v.check()
        paths = mask_paths(request.update_mask, _MUTABLE)
        if "name" in paths and not app.name.strip():
            v.add("application.name", "must not be empty")
        v.check()
        fields: dict[str, Any] = {}
        if "name" in paths:
            fields["name"] = app.name
        if "description" in paths:
            fields["description"] = app.description
        if "labels" in paths:
            fields["labels"] = dict(app.labels)
        updated = await self._repo.update(app.id, version=app.version, **fields)
        return pb.UpdateApplicationResponse(application=application_message(updated))

    async def ArchiveApplication(
        self, request: pb.ArchiveApplicationRequest, context: Context
    ) -> pb.ArchiveApplicationResponse:
        v = Violations()
        v.require(request.id, "id")
        v.require(request.version, "version")
        v.check()
        archived = await self._repo.archive(request.id, version=request.version)
        return pb.ArchiveApplicationResponse(application=application_message(archived))
