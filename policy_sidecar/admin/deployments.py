"""ModelService."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import grpc

from policy_sidecar.admin.convert import (
    decimal_text,
    mask_paths,
    page_size,
    parse_decimal,
    timestamp,
)
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import models_pb2 as pb
from policy_sidecar.catalog.deployments import azure_problems
from policy_sidecar.providers.registry import default_registry
from policy_sidecar.store.postgres import AccountRepository, ModelRepository, NotFoundError
from policy_sidecar.store.postgres.fallback_groups import FallbackGroupRepository
from policy_sidecar.store.postgres.price_book import PriceBookRepository, PriceVersion
from policy_sidecar.store.records import EXTRA_PRICE_DECIMALS, Model

__all__ = ["ModelServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_PRICES = (
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cached_input_price_per_mtok",
    *EXTRA_PRICE_DECIMALS,
)
_TEXT = ("name", "provider", "upstream_model", "upstream_cluster")
# Optional text: empty is unset (None).
_AZURE = ("azure_deployment", "api_version")
_MUTABLE = (
    *_TEXT,
    "context_window",
    *_PRICES,
    "image_prices",
    "long_context_threshold_tokens",
    "enabled",
    "account",
    *_AZURE,
)
# "1024x1024/hd", "auto/high": a size, then a quality.
_IMAGE_KEY = re.compile(r"[0-9a-z]+(x[0-9]+)?/[a-z_]+")
_MAX_IMAGE_PRICES = 64


def _prices_of(row: Model | PriceVersion) -> dict[str, Any]:
    """The price fields of a model or a price version, as their messages carry them."""
    out: dict[str, Any] = {name: decimal_text(getattr(row, name)) for name in _PRICES}
    out["image_prices"] = {k: decimal_text(Decimal(str(v))) for k, v in row.image_prices.items()}
    out["long_context_threshold_tokens"] = row.long_context_threshold_tokens or 0
    return out


def model_message(model: Model) -> pb.Model:
    return pb.Model(
        id=model.id,
        name=model.name,
        provider=model.provider,
        upstream_model=model.upstream_model,
        upstream_cluster=model.upstream_cluster,
        context_window=model.context_window or 0,
        enabled=model.enabled,
        account=model.account or "",
        azure_deployment=model.azure_deployment or "",
        api_version=model.api_version or "",
        version=model.version,
        create_time=timestamp(model.created_at),
        update_time=timestamp(model.updated_at),
        price_version=model.price_version or 0,
        **_prices_of(model),
    )


def price_version_message(v: PriceVersion) -> pb.PriceVersion:
    return pb.PriceVersion(
        version=v.version,
        model_id=v.model_id,
        model_name=v.model_name,
        effective_time=timestamp(v.effective_at),
        **_prices_of(v),
    )


def _known_providers() -> frozenset[str]:
    return frozenset(default_registry().names)


def _fields(m: pb.Model, paths: frozenset[str], v: Violations) -> dict[str, Any]:
    """The columns named by `paths`, validated; problems go to `v`."""
    out: dict[str, Any] = {}
    if "account" in paths:
        out["account"] = m.account.strip() or None
    for name in _TEXT:
        if name in paths:
            value = getattr(m, name).strip()
            # A model on an account is routed to the account's cluster.
            if not value and not (name == "upstream_cluster" and out.get("account")):
                v.add(f"model.{name}", "required")
            out[name] = value
    if "provider" in paths and out.get("provider"):
        known = _known_providers()
        if out["provider"] not in known:
            v.add("model.provider", f"unknown provider; one of {', '.join(sorted(known))}")
    if "context_window" in paths:
        if m.context_window < 0:
            v.add("model.context_window", "must not be negative")
        out["context_window"] = m.context_window or None
    for name in _PRICES:
        if name in paths:
            # "" (or never set): unpriced, which is not free; "0" is free.
            text = getattr(m, name).strip()
            out[name] = parse_decimal(text, f"model.{name}", v) if text else None
    if "image_prices" in paths:
        if len(m.image_prices) > _MAX_IMAGE_PRICES:
            v.add("model.image_prices", f"at most {_MAX_IMAGE_PRICES} sizes and qualities")
        prices = {}
        for key, text in sorted(m.image_prices.items()):
            where = f"model.image_prices[{key!r}]"
            if not _IMAGE_KEY.fullmatch(key):
                v.add(where, 'the key must be "size/quality", e.g. "1024x1024/hd"')
            prices[key] = parse_decimal(text.strip(), where, v) if text.strip() else None
            if prices[key] is None:
                v.add(where, "a price is required (0 for free)")
        out["image_prices"] = prices
    if "long_context_threshold_tokens" in paths:
        if m.long_context_threshold_tokens < 0:
            v.add("model.long_context_threshold_tokens", "must not be negative")
        out["long_context_threshold_tokens"] = m.long_context_threshold_tokens or None
    if "enabled" in paths:
        out["enabled"] = m.enabled
    for name in _AZURE:
        if name in paths:
            out[name] = getattr(m, name).strip() or None
    return out


class ModelServicer:
    def __init__(
        self,
        repo: ModelRepository,
        accounts: AccountRepository,
        prices: PriceBookRepository,
        groups: FallbackGroupRepository | None = None,
    ) -> None:
        self._repo = repo
        self._accounts = accounts
        self._prices = prices
        self._groups = groups

    @staticmethod
    def _check_azure(fields: dict[str, Any], provider: str | None, v: Violations) -> None:
        """The Azure fields' format, and only on an azure model (``provider``: the
        model's provider after the change, None when not known)."""
        for name, problem in azure_problems(
            provider, fields.get("azure_deployment"), fields.get("api_version")
        ):
            v.add(f"model.{name}", problem)

    async def _check_account(self, fields: dict[str, Any], v: Violations) -> None:
        """An account named must exist, and serve the model's provider when both are given."""
        name = fields.get("account")
        if not name:
            return
        try:
            account = await self._accounts.get_by_name(name)
        except NotFoundError:
            v.add("model.account", f"unknown provider account {name!r}")
            return
        provider = fields.get("provider")
        if provider and provider != account.provider:
            v.add(
                "model.account", f"account {name!r} is a {account.provider} account, not {provider}"
            )

    async def _check_group(
        self, fields: dict[str, Any], provider: str | None, v: Violations
    ) -> None:
        """An ``upstream_cluster`` naming a fallback group: the group's accounts must
        serve the model's provider. Any other name is a cluster of the static Envoy
        config, which the admin service cannot see."""
        cluster = fields.get("upstream_cluster")
        if not cluster or fields.get("account") or self._groups is None or provider is None:
            return
        try:
            group = await self._groups.get_by_name(cluster)
            account = await self._accounts.get_by_name(group.accounts[0])
        except NotFoundError:
            return
        if account.provider != provider:
            v.add(
                "model.upstream_cluster",
                f"fallback group {cluster!r} serves {account.provider}, not {provider}",
            )

    async def CreateModel(
        self, request: pb.CreateModelRequest, context: Context
    ) -> pb.CreateModelResponse:
        v = Violations()
        fields = _fields(request.model, frozenset(_MUTABLE), v)
        await self._check_account(fields, v)
        await self._check_group(fields, fields.get("provider"), v)
        self._check_azure(fields, fields.get("provider"), v)
        v.check()
        return pb.CreateModelResponse(model=model_message(await self._repo.create(**fields)))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        if request.id.startswith("mdl_"):
            model = await self._repo.get(request.id)
        else:
            model = await self._repo.get_by_name(request.id)
        return pb.GetModelResponse(model=model_message(model))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        page = await self._repo.list(
            provider=request.provider or None,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListModelsResponse(
            models=[model_message(m) for m in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def UpdateModel(
        self, request: pb.UpdateModelRequest, context: Context
    ) -> pb.UpdateModelResponse:
        v = Violations()
        v.require(request.model.id, "model.id")
        v.require(request.model.version, "model.version")
        v.check()
        paths = mask_paths(request.update_mask, _MUTABLE)
        fields = _fields(request.model, paths, v)
        await self._check_account(fields, v)
        provider = fields.get("provider")
        if provider is None and (
            fields.get("azure_deployment")
            or fields.get("api_version")
            or "upstream_cluster" in fields
        ):
            provider = (await self._repo.get(request.model.id)).provider
        await self._check_group(fields, provider, v)
        self._check_azure(fields, provider, v)
        v.check()
        model = await self._repo.update(request.model.id, version=request.model.version, **fields)
        return pb.UpdateModelResponse(model=model_message(model))

    async def DeleteModel(
        self, request: pb.DeleteModelRequest, context: Context
    ) -> pb.DeleteModelResponse:
        v = Violations()
        v.require(request.id, "id")
        v.require(request.version, "version")
        v.check()
        await self._repo.delete(request.id, version=request.version)
        return pb.DeleteModelResponse()

    async def ListPriceVersions(
        self, request: pb.ListPriceVersionsRequest, context: Context
    ) -> pb.ListPriceVersionsResponse:
        v = Violations()
        size = page_size(request.page_size)
        after = 0
        if request.page_token:
            if not request.page_token.isdigit() or len(request.page_token) > 18:
                v.add("page_token", "not a token this method returned")
            else:
                after = int(request.page_token)
        v.check()
        versions, next_after = await self._prices.page(
            model_name=request.model.strip() or None, page_size=size, after=after
        )
        return pb.ListPriceVersionsResponse(
            price_versions=[price_version_message(p) for p in versions],
            next_page_token="" if next_after is None else str(next_after),
        )
