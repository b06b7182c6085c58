"""Invalidation through real Redis: an admin write reaches a subscriber at once."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis

from policy_sidecar.admin import start_admin_server
from policy_sidecar.admin.v1 import applications_pb2 as apps
from policy_sidecar.admin.v1 import applications_pb2_grpc
from policy_sidecar.store.invalidation import PolicyChange
from policy_sidecar.store.postgres import Pool
from policy_sidecar.store.redis_publisher import (
    CHANNEL,
    RedisPolicyChangePublisher,
    decode_change,
    encode_change,
)

from .conftest import TOKENS
from .helpers import AUTH

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    "change",
    [
        PolicyChange(kind="policy", action="updated", id="pol_1", org_id="o", version=3),
        PolicyChange(kind="api_key", action="created", id="key_1", app_id="a", key_hash="ab" * 32),
        PolicyChange(kind="model", action="deleted", id="mdl_1"),
    ],
)
def test_payload_round_trip(change: PolicyChange) -> None:
    payload = encode_change(change)
    assert set(json.loads(payload)) == {
        "kind",
        "action",
        "id",
        "org_id",
        "app_id",
        "version",
        "key_hash",
    }
    assert decode_change(payload) == change


@pytest.mark.parametrize(
    ("payload", "error"),
    [("[]", "must be an object"), ('{"kind": "policy"}', "must be an object"), ("x", "Expecting")],
)
def test_malformed_payload(payload: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        decode_change(payload)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.postgres
async def test_admin_write_is_published(pool: Pool, redis: Redis) -> None:
    channel = f"{CHANNEL}:test:{uuid.uuid4().hex}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    server = await start_admin_server(
        pool=pool, tokens=TOKENS, publisher=RedisPolicyChangePublisher(redis, channel)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = applications_pb2_grpc.ApplicationServiceStub(ch)
            created = await stub.CreateApplication(
                apps.CreateApplicationRequest(application=apps.Application(org_id="o", name="n")),
                metadata=AUTH,
            )

        async def next_message() -> PolicyChange:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None:
                    return decode_change(message["data"])

        change = await asyncio.wait_for(next_message(), timeout=10)
        assert (change.kind, change.action, change.id, change.org_id) == (
            "application",
            "created",
            created.application.id,
            "o",
        )
    finally:
        await server.server.stop(None)
        await pubsub.aclose()
