"""Domain value types of the store, shared by every backend. All frozen.

Field names equal column names, so the Postgres repositories build them directly
from rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

__all__ = [
    "ApiKey",
    "Application",
    "ApplicationConfig",
    "CreatedApiKey",
    "FallbackGroupRow",
    "KeyIdentity",
    "Model",
    "Page",
    "Policy",
    "PolicyMode",
    "ProviderAccountRow",
]

T = TypeVar("T")

PolicyMode = Literal["enforce", "shadow"]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; pass `next_page_token` to get the next."""

    items: tuple[T, ...]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class Application:
    id: str
    org_id: str
    name: str
    description: str
    labels: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


@dataclass(frozen=True, slots=True)
class ApplicationConfig:
    app_id: str
    environment: str
    enabled: bool
    default_model: str | None
    settings: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: never the secret, only its hash and a short visible prefix."""

    id: str
    app_id: str
    environment: str
    name: str
    prefix: str
    key_hash: str
    version: int
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """Returned once, by create: the secret is not stored and cannot be read again."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a usable key belongs to: what the sidecar caches per key hash."""

    key_id: str
    org_id: str
    app_id: str
    environment: str
    default_model: str | None
    expires_at: datetime | None
    environment_enabled: bool = True


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    provider: str
    upstream_model: str
    upstream_cluster: str
    context_window: int | None
    # None: unpriced (unknown, not free).
    input_price_per_mtok: Decimal | None
    output_price_per_mtok: Decimal | None
    cached_input_price_per_mtok: Decimal | None
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime
    # The provider account (by name) whose cluster serves this model; None: upstream_cluster.
    account: str | None = None
    # The price book version of the current prices (a new one on every price change).
    price_version: int | None = None
    # Azure only: the deployment's name at Azure and its path's api-version.
    azure_deployment: str | None = None
    api_version: str | None = None
    # Other units and pricing rules (migration 0009_unit_prices.sql; docs/providers.md).
    unit_price_usd: Decimal | None = None
    # "1024x1024/hd" -> decimal text, USD per image.
    image_prices: Mapping[str, str] = field(default_factory=dict)
    cache_write_5m_price_per_mtok: Decimal | None = None
    cache_write_1h_price_per_mtok: Decimal | None = None
    long_context_threshold_tokens: int | None = None
    long_context_input_price_per_mtok: Decimal | None = None
    long_context_cached_input_price_per_mtok: Decimal | None = None
    long_context_output_price_per_mtok: Decimal | None = None


#: The prices beyond input / output / cached input tokens, as Model and price version
#: columns; all but the threshold and the image prices are decimals.
EXTRA_PRICE_DECIMALS = (
    "unit_price_usd",
    "cache_write_5m_price_per_mtok",
    "cache_write_1h_price_per_mtok",
    "long_context_input_price_per_mtok",
    "long_context_cached_input_price_per_mtok",
    "long_context_output_price_per_mtok",
)
EXTRA_PRICE_FIELDS = (*EXTRA_PRICE_DECIMALS, "image_prices", "long_context_threshold_tokens")


@dataclass(frozen=True, slots=True)
class ProviderAccountRow:
    """A stored provider account: the key is only named (`credential_ref`), never held."""

    id: str
    name: str
    provider: str
    base_host: str
    port: int
    credential_ref: str
    ca_file: str | None
    address: str | None
    tokens_per_minute: int | None
    requests_per_minute: int | None
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FallbackGroupRow:
    """A stored fallback group: account names, first choice first."""

    id: str
    name: str
    accounts: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    name: str
    type: str
    org_id: str | None
    app_id: str | None
    environment: str | None
    model_pattern: str | None
    mode: PolicyMode
    priority: int
    enabled: bool
    config: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
