"""AccountService: provider accounts (docs/admin.md, "Provider accounts").

No key material is ever accepted: `credential_ref` is a secret's name, checked for its
charset always, and against the credentials directory when the admin service has one
(POLICY_SIDECAR_CREDENTIALS_DIR); without one, an unknown reference is only found by
Envoy (the account's requests then fail with 503 until the secret exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from policy_sidecar.admin.convert import mask_paths, page_size, timestamp
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import accounts_pb2 as pb
from policy_sidecar.catalog.account_rules import account_problems, credential_file
from policy_sidecar.store.postgres import AccountRepository
from policy_sidecar.store.postgres.fallback_groups import FallbackGroupRepository
from policy_sidecar.store.records import ProviderAccountRow

__all__ = ["AccountServicer", "account_message"]

Context = grpc.aio.ServicerContext[Any, Any]
_TEXT = ("provider", "base_host", "credential_ref")
_OPTIONAL_TEXT = ("ca_file", "address")
_QUOTAS = ("tokens_per_minute", "requests_per_minute")
# The name is immutable: it is the cluster name and what models refer to.
_MUTABLE = (*_TEXT, "port", *_OPTIONAL_TEXT, *_QUOTAS, "enabled")


def account_message(row: ProviderAccountRow) -> pb.Account:
    return pb.Account(
        id=row.id,
        name=row.name,
        provider=row.provider,
        base_host=row.base_host,
        port=row.port,
        credential_ref=row.credential_ref,
        ca_file=row.ca_file or "",
        address=row.address or "",
        tokens_per_minute=row.tokens_per_minute or 0,
        requests_per_minute=row.requests_per_minute or 0,
        enabled=row.enabled,
        version=row.version,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )


class AccountServicer:
    def __init__(
        self,
        repo: AccountRepository,
        credentials_dir: Path | None = None,
        groups: FallbackGroupRepository | None = None,
    ) -> None:
        self._repo = repo
        self._credentials_dir = credentials_dir
        self._groups = groups

    async def _check_groups(
        self, row: ProviderAccountRow, fields: dict[str, Any], v: Violations
    ) -> None:
        """An account of a fallback group stays enabled and of the group's provider: a
        group is checked when it is written, and this keeps it true."""
        if self._groups is None:
            return
        disabling = fields.get("enabled") is False and row.enabled
        moving = "provider" in fields and fields["provider"] != row.provider
        if not (disabling or moving):
            return
        groups = await self._groups.with_account(row.name)
        if not groups:
            return
        names = ", ".join(groups)
        if disabling:
            v.add("account.enabled", f"in fallback group(s) {names}: remove it there first")
        if moving:
            v.add("account.provider", f"in fallback group(s) {names}: remove it there first")

    def _fields(self, a: pb.Account, paths: frozenset[str], v: Violations) -> dict[str, Any]:
        """The columns named by `paths`, validated; problems go to `v`."""
        out: dict[str, Any] = {}
        for name in (*_TEXT, *_OPTIONAL_TEXT):
            if name in paths:
                value = getattr(a, name).strip()
                if name in _TEXT and not value:
                    v.add(f"account.{name}", "required")
                out[name] = value if value or name in _TEXT else None
        if "port" in paths:
            out["port"] = a.port or 443
        for name in _QUOTAS:
            if name in paths:
                out[name] = getattr(a, name) or None
        if "enabled" in paths:
            out["enabled"] = a.enabled
        checked = {k: getattr(a, k) for k in _QUOTAS if k in paths}
        checked |= {k: out[k] for k in ("provider", "base_host", "port", "ca_file") if out.get(k)}
        if out.get("credential_ref"):
            checked["credential_ref"] = out["credential_ref"]
        problems = account_problems(**checked)
        for field, problem in problems:
            v.add(f"account.{field}", problem)
        ref = out.get("credential_ref")
        if (
            ref
            and self._credentials_dir is not None
            and "credential_ref" not in dict(problems)
            and not credential_file(self._credentials_dir, ref).is_file()
        ):
            v.add(
                "account.credential_ref",
                "unknown credential reference: no such secret in the credentials directory",
            )
        return out

    async def CreateAccount(
        self, request: pb.CreateAccountRequest, context: Context
    ) -> pb.CreateAccountResponse:
        v = Violations()
        name = request.account.name.strip()
        if not name:
            v.add("account.name", "required")
        else:
            for field, problem in account_problems(name=name):
                v.add(f"account.{field}", problem)
            if self._groups is not None and await self._groups.exists(name):
                # Both are Envoy cluster names.
                v.add("account.name", f"{name!r} is a fallback group's name")
        fields = self._fields(request.account, frozenset(_MUTABLE), v)
        v.check()
        row = await self._repo.create(name=name, **fields)
        return pb.CreateAccountResponse(account=account_message(row))

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.GetAccountResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        if request.id.startswith("acc_"):
            row = await self._repo.get(request.id)
        else:
            row = await self._repo.get_by_name(request.id)
        return pb.GetAccountResponse(account=account_message(row))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        page = await self._repo.list(
            provider=request.provider or None,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListAccountsResponse(
            accounts=[account_message(a) for a in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: Context
    ) -> pb.UpdateAccountResponse:
        v = Violations()
        v.require(request.account.id, "account.id")
        v.require(request.account.version, "account.version")
        v.check()
        paths = mask_paths(request.update_mask, _MUTABLE)
        fields = self._fields(request.account, paths, v)
        v.check()
        if fields.get("enabled") is False or "provider" in fields:
            await self._check_groups(await self._repo.get(request.account.id), fields, v)
            v.check()
        row = await self._repo.update(request.account.id, version=request.account.version, **fields)
        return pb.UpdateAccountResponse(account=account_message(row))

    async def DeleteAccount(
        self, request: pb.DeleteAccountRequest, context: Context
    ) -> pb.DeleteAccountResponse:
        v = Violations()
        v.require(request.id, "id")
        v.require(request.version, "version")
        v.check()
        await self._repo.delete(request.id, version=request.version)
        return pb.DeleteAccountResponse()
