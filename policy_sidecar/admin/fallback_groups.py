"""FallbackGroupService: fallback groups (docs/connect-providers.md, "Fallback across
accounts").

A group is checked against the accounts as they are when it is written, by the same
rules ``render-envoy`` applies to an accounts file (``fallback_group_problems``); the
account side keeps it true (AccountService refuses to disable an account of a group,
to change its provider or to take a group's name, and an account in a group cannot be
deleted).
"""

from __future__ import annotations

from typing import Any

import grpc

from policy_sidecar.admin.convert import mask_paths, page_size, timestamp
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import fallback_groups_pb2 as pb
from policy_sidecar.catalog.account_rules import fallback_group_problems
from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.store.account_catalog import account_from
from policy_sidecar.store.postgres import AccountRepository
from policy_sidecar.store.postgres.fallback_groups import FallbackGroupRepository
from policy_sidecar.store.records import FallbackGroupRow

__all__ = ["FallbackGroupServicer", "all_accounts", "group_message"]

Context = grpc.aio.ServicerContext[Any, Any]
_MUTABLE = ("accounts",)
_FIELD = "fallback_group"


def group_message(row: FallbackGroupRow) -> pb.FallbackGroup:
    return pb.FallbackGroup(
        id=row.id,
        name=row.name,
        accounts=row.accounts,
        version=row.version,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )


async def all_accounts(repo: AccountRepository) -> dict[str, ProviderAccount]:
    """Every account, by name (a handful: they are provider organisations)."""
    out: dict[str, ProviderAccount] = {}
    token: str | None = None
    while True:
        page = await repo.list(page_size=500, page_token=token)
        out.update((row.name, account_from(row)) for row in page.items)
        token = page.next_page_token
        if token is None:
            return out


class FallbackGroupServicer:
    def __init__(self, repo: FallbackGroupRepository, accounts: AccountRepository) -> None:
        self._repo = repo
        self._accounts = accounts

    async def _check(self, name: str, members: list[str], v: Violations) -> None:
        accounts = await all_accounts(self._accounts)
        for field, problem in fallback_group_problems(name, members, accounts):
            if name or field != "name":  # an empty name is reported as required
                v.add(f"{_FIELD}.{field}", problem)

    async def CreateFallbackGroup(
        self, request: pb.CreateFallbackGroupRequest, context: Context
    ) -> pb.CreateFallbackGroupResponse:
        v = Violations()
        name = request.fallback_group.name.strip()
        members = [a.strip() for a in request.fallback_group.accounts]
        if not name:
            v.add(f"{_FIELD}.name", "required")
        await self._check(name, members, v)
        v.check()
        row = await self._repo.create(name=name, accounts=members)
        return pb.CreateFallbackGroupResponse(fallback_group=group_message(row))

    async def GetFallbackGroup(
        self, request: pb.GetFallbackGroupRequest, context: Context
    ) -> pb.GetFallbackGroupResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        if request.id.startswith("fbg_"):
            row = await self._repo.get(request.id)
        else:
            row = await self._repo.get_by_name(request.id)
        return pb.GetFallbackGroupResponse(fallback_group=group_message(row))

    async def ListFallbackGroups(
        self, request: pb.ListFallbackGroupsRequest, context: Context
    ) -> pb.ListFallbackGroupsResponse:
        page = await self._repo.list(
            page_size=page_size(request.page_size), page_token=request.page_token or None
        )
        return pb.ListFallbackGroupsResponse(
            fallback_groups=[group_message(g) for g in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def UpdateFallbackGroup(
        self, request: pb.UpdateFallbackGroupRequest, context: Context
    ) -> pb.UpdateFallbackGroupResponse:
        v = Violations()
        v.require(request.fallback_group.id, f"{_FIELD}.id")
        v.require(request.fallback_group.version, f"{_FIELD}.version")
        v.check()
        mask_paths(request.update_mask, _MUTABLE)
        current = await self._repo.get(request.fallback_group.id)
        members = [a.strip() for a in request.fallback_group.accounts]
        await self._check(current.name, members, v)
        v.check()
        row = await self._repo.update(
            current.id, version=request.fallback_group.version, accounts=members
        )
        return pb.UpdateFallbackGroupResponse(fallback_group=group_message(row))

    async def DeleteFallbackGroup(
        self, request: pb.DeleteFallbackGroupRequest, context: Context
    ) -> pb.DeleteFallbackGroupResponse:
        v = Violations()
        v.require(request.id, "id")
        v.require(request.version, "version")
        v.check()
        await self._repo.delete(request.id, version=request.version)
        return pb.DeleteFallbackGroupResponse()
