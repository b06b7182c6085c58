"""ApplicationConfigService."""

from __future__ import annotations

from typing import Any

import grpc

from policy_sidecar.admin.convert import (
    check_environment,
    mask_paths,
    page_size,
    struct,
    struct_dict,
    timestamp,
)
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.live_app import for_live_app
from policy_sidecar.admin.v1 import configs_pb2 as pb
from policy_sidecar.store.postgres import ApplicationConfigRepository, ApplicationRepository
from policy_sidecar.store.records import ApplicationConfig

__all__ = ["ApplicationConfigServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_MUTABLE = ("enabled", "default_model", "settings")


def config_message(config: ApplicationConfig) -> pb.ApplicationConfig:
    return pb.ApplicationConfig(
        app_id=config.app_id,
        environment=config.environment,
        enabled=config.enabled,
        default_model=config.default_model or "",
        settings=struct(config.settings),
        version=config.version,
        create_time=timestamp(config.created_at),
        update_time=timestamp(config.updated_at),
    )


class ApplicationConfigServicer:
    def __init__(self, repo: ApplicationConfigRepository, apps: ApplicationRepository) -> None:
        self._repo = repo
        self._apps = apps

    async def GetApplicationConfig(
        self, request: pb.GetApplicationConfigRequest, context: Context
    ) -> pb.GetApplicationConfigResponse:
        v = Violations()
        v.require(request.app_id, "app_id")
        v.require(request.environment, "environment")
        v.check()
        config = await self._repo.get(request.app_id, request.environment)
        return pb.GetApplicationConfigResponse(config=config_message(config))

    async def ListApplicationConfigs(
        self, request: pb.ListApplicationConfigsRequest, context: Context
    ) -> pb.ListApplicationConfigsResponse:
        v = Violations()
        v.require(request.app_id, "app_id")
        v.check()
        page = await self._repo.list(
            app_id=request.app_id,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListApplicationConfigsResponse(
            configs=[config_message(c) for c in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def UpsertApplicationConfig(
        self, request: pb.UpsertApplicationConfigRequest, context: Context
    ) -> pb.UpsertApplicationConfigResponse:
        c = request.config
        v = Violations()
        v.require(c.app_id, "config.app_id")
        check_environment(c.environment, "config.environment", v)
        v.check()
        settings = struct_dict(c.settings)
        if c.version == 0:
            created = await for_live_app(
                self._apps,
                c.app_id,
                self._repo.create(
                    app_id=c.app_id,
                    environment=c.environment,
                    enabled=c.enabled,
                    default_model=c.default_model or None,
                    settings=settings,
                ),
            )
            return pb.UpsertApplicationConfigResponse(config=config_message(created), created=True)
        paths = mask_paths(request.update_mask, _MUTABLE)
        fields: dict[str, Any] = {}
        if "enabled" in paths:
            fields["enabled"] = c.enabled
        if "default_model" in paths:
            fields["default_model"] = c.default_model or None
        if "settings" in paths:
            fields["settings"] = settings
        updated = await self._repo.update(c.app_id, c.environment, version=c.version, **fields)
        return pb.UpsertApplicationConfigResponse(config=config_message(updated), created=False)
