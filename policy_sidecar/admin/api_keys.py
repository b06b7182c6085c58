"""ApiKeyService. The secret appears only in CreateApiKeyResponse, never in logs."""

from __future__ import annotations

from typing import Any

import grpc

from policy_sidecar.admin.convert import check_environment, page_size, timestamp, to_datetime
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.live_app import for_live_app
from policy_sidecar.admin.v1 import api_keys_pb2 as pb
from policy_sidecar.store.postgres import ApiKeyRepository, ApplicationRepository
from policy_sidecar.store.records import ApiKey

__all__ = ["ApiKeyServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


def key_message(key: ApiKey) -> pb.ApiKey:
    # key_hash is deliberately not exposed: it is what the sidecar looks keys up by.
    return pb.ApiKey(
        id=key.id,
        app_id=key.app_id,
        environment=key.environment,
        name=key.name,
        prefix=key.prefix,
        version=key.version,
        create_time=timestamp(key.created_at),
        update_time=timestamp(key.updated_at),
        last_used_time=timestamp(key.last_used_at),
        expire_time=timestamp(key.expires_at),
        revoke_time=timestamp(key.revoked_at),
    )


class ApiKeyServicer:
    def __init__(self, repo: ApiKeyRepository, apps: ApplicationRepository) -> None:
        self._repo = repo
        self._apps = apps

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        v = Violations()
        v.require(request.app_id, "app_id")
        check_environment(request.environment, "environment", v)
        v.check()
        created = await for_live_app(
            self._apps,
            request.app_id,
            self._repo.create(
                app_id=request.app_id,
                environment=request.environment,
                name=request.name,
                expires_at=to_datetime(request.expire_time)
                if request.HasField("expire_time")
                else None,
            ),
        )
        return pb.CreateApiKeyResponse(api_key=key_message(created.key), secret=created.secret)

    async def GetApiKey(
        self, request: pb.GetApiKeyRequest, context: Context
    ) -> pb.GetApiKeyResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        return pb.GetApiKeyResponse(api_key=key_message(await self._repo.get(request.id)))

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Context
    ) -> pb.ListApiKeysResponse:
        page = await self._repo.list(
            app_id=request.app_id or None,
            environment=request.environment or None,
            include_revoked=request.include_revoked,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListApiKeysResponse(
            api_keys=[key_message(k) for k in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        v = Violations()
        v.require(request.id, "id")
        v.require(request.version, "version")
        v.check()
        return pb.RevokeApiKeyResponse(
            api_key=key_message(await self._repo.revoke(request.id, version=request.version))
        )
