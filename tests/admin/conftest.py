"""Fixtures: the admin server on a free port, in-process, over a real gRPC channel,
against a fresh Postgres schema (the store tests' fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from policy_sidecar.admin import AdminServer, start_admin_server
from policy_sidecar.admin.auth import parse_tokens
from policy_sidecar.admin.v1 import (
    api_keys_pb2_grpc,
    applications_pb2_grpc,
    configs_pb2_grpc,
    models_pb2_grpc,
    policies_pb2_grpc,
    usage_pb2_grpc,
)
from policy_sidecar.store.postgres import Pool
from tests.store.conftest import dsn, pool, publisher, schema_dsn  # noqa: F401  (fixtures)
from tests.store.helpers import RecordingPublisher

from .helpers import ADMIN_TOKEN, READ_TOKEN

TOKENS = parse_tokens([f"ops:admin:{ADMIN_TOKEN}", f"viewer:readonly:{READ_TOKEN}"], source="test")


@dataclass(frozen=True, slots=True)
class Client:
    channel: grpc.aio.Channel
    apps: applications_pb2_grpc.ApplicationServiceStub
    configs: configs_pb2_grpc.ApplicationConfigServiceStub
    keys: api_keys_pb2_grpc.ApiKeyServiceStub
    models: models_pb2_grpc.ModelServiceStub
    policies: policies_pb2_grpc.PolicyServiceStub
    usage: usage_pb2_grpc.UsageServiceStub


@pytest.fixture
async def admin(pool: Pool, publisher: RecordingPublisher) -> AsyncIterator[AdminServer]:  # noqa: F811
    server = await start_admin_server(pool=pool, tokens=TOKENS, publisher=publisher)
    try:
        yield server
    finally:
        await server.server.stop(None)


@pytest.fixture
async def client(admin: AdminServer) -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{admin.port}") as channel:
        yield Client(
            channel,
            applications_pb2_grpc.ApplicationServiceStub(channel),
            configs_pb2_grpc.ApplicationConfigServiceStub(channel),
            api_keys_pb2_grpc.ApiKeyServiceStub(channel),
            models_pb2_grpc.ModelServiceStub(channel),
            policies_pb2_grpc.PolicyServiceStub(channel),
            usage_pb2_grpc.UsageServiceStub(channel),
        )
