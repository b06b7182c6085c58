"""Postgres backend: schema migrations and async repositories (psycopg 3 + pool)."""

from __future__ import annotations

from policy_sidecar.store.postgres.accounts import AccountRepository
from policy_sidecar.store.postgres.applications import ApplicationRepository
from policy_sidecar.store.postgres.configs import ApplicationConfigRepository
from policy_sidecar.store.postgres.deployments import ModelRepository
from policy_sidecar.store.postgres.errors import (
    AlreadyExistsError,
    InvalidError,
    NotFoundError,
    StoreError,
    VersionConflictError,
)
from policy_sidecar.store.postgres.keys import ApiKeyRepository
from policy_sidecar.store.postgres.migrations import migrate
from policy_sidecar.store.postgres.policies import PolicyRepository
from policy_sidecar.store.postgres.pool import Pool, open_pool
from policy_sidecar.store.postgres.usage import UsageRepository
from policy_sidecar.store.postgres.usage_queries import UsageQueries

__all__ = [
    "AccountRepository",
    "AlreadyExistsError",
    "ApiKeyRepository",
    "ApplicationConfigRepository",
    "ApplicationRepository",
    "InvalidError",
    "ModelRepository",
    "NotFoundError",
    "PolicyRepository",
    "Pool",
    "StoreError",
    "UsageQueries",
    "UsageRepository",
    "VersionConflictError",
    "migrate",
    "open_pool",
]
