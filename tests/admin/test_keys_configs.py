from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from policy_sidecar.admin.v1 import api_keys_pb2 as keys
from policy_sidecar.admin.v1 import applications_pb2 as apps
from policy_sidecar.admin.v1 import configs_pb2 as cfg
from policy_sidecar.identity.keys import hash_api_key
from policy_sidecar.store.postgres import ApiKeyRepository, Pool

from .conftest import Client
from .helpers import AUTH, READ, fails, field_violations

pytestmark = pytest.mark.postgres


async def new_app(client: Client) -> str:
    response = await client.apps.CreateApplication(
        apps.CreateApplicationRequest(application=apps.Application(org_id="acme", name="bot")),
        metadata=AUTH,
    )
    return response.application.id


async def test_key_secret_once_prefix_in_lists_and_revoke(
    client: Client, pool: Pool, publisher
) -> None:
    app_id = await new_app(client)
    created = await client.keys.CreateApiKey(
        keys.CreateApiKeyRequest(app_id=app_id, environment="prod", name="ci"), metadata=AUTH
    )
    secret, key = created.secret, created.api_key
    assert secret.startswith("ps_prod_") and secret.startswith(key.prefix)
    assert len(key.prefix) < len(secret)
    # The secret resolves, and is never returned again.
    repo = ApiKeyRepository(pool)
    assert (await repo.resolve(hash_api_key(secret))) is not None
    listed = await client.keys.ListApiKeys(keys.ListApiKeysRequest(app_id=app_id), metadata=READ)
    got = await client.keys.GetApiKey(keys.GetApiKeyRequest(id=key.id), metadata=READ)
    for message in (listed, got):
        assert secret not in str(message) and hash_api_key(secret) not in str(message)
    assert [k.prefix for k in listed.api_keys] == [key.prefix]

    revoked = await client.keys.RevokeApiKey(
        keys.RevokeApiKeyRequest(id=key.id, version=key.version), metadata=AUTH
    )
    assert revoked.api_key.HasField("revoke_time")
    assert (await repo.resolve(hash_api_key(secret))) is None
    listed = await client.keys.ListApiKeys(keys.ListApiKeysRequest(app_id=app_id), metadata=AUTH)
    assert list(listed.api_keys) == []
    # Invalidation carries the hash the sidecar caches under, never the secret.
    key_changes = [c for c in publisher.changes if c.kind == "api_key"]
    assert [c.action for c in key_changes] == ["created", "updated"]
    assert all(c.key_hash == hash_api_key(secret) for c in key_changes)


@pytest.mark.parametrize(
    ("request_", "code", "violations"),
    [
        (keys.CreateApiKeyRequest(), grpc.StatusCode.INVALID_ARGUMENT, {"app_id", "environment"}),
        (
            keys.CreateApiKeyRequest(app_id="app_missing", environment="prod"),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
    ],
)
async def test_key_create_errors(
    client: Client, request_: keys.CreateApiKeyRequest, code: grpc.StatusCode, violations: object
) -> None:
    exc = await fails(client.keys.CreateApiKey(request_, metadata=AUTH))
    assert exc.code() == code
    if violations is not None:
        assert set(field_violations(exc)) == violations


async def test_revoke_needs_version(client: Client) -> None:
    exc = await fails(client.keys.RevokeApiKey(keys.RevokeApiKeyRequest(id="k"), metadata=AUTH))
    assert field_violations(exc) == {"version": "required"}


def settings(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def test_config_upsert_get_list_and_conflict(client: Client) -> None:
    app_id = await new_app(client)
    first = await client.configs.UpsertApplicationConfig(
        cfg.UpsertApplicationConfigRequest(
            config=cfg.ApplicationConfig(
                app_id=app_id,
                environment="prod",
                enabled=True,
                default_model="gpt-4o-mini",
                settings=settings(max_rps=5),
            )
        ),
        metadata=AUTH,
    )
    assert first.created and first.config.version == 1
    assert dict(first.config.settings) == {"max_rps": 5}
    again = await fails(
        client.configs.UpsertApplicationConfig(
            cfg.UpsertApplicationConfigRequest(
                config=cfg.ApplicationConfig(app_id=app_id, environment="prod")
            ),
            metadata=AUTH,
        )
    )
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = await client.configs.UpsertApplicationConfig(
        cfg.UpsertApplicationConfigRequest(
            config=cfg.ApplicationConfig(
                app_id=app_id, environment="prod", version=1, enabled=False, default_model="x"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=AUTH,
    )
    assert not updated.created and updated.config.version == 2
    assert (updated.config.enabled, updated.config.default_model) == (False, "gpt-4o-mini")
    stale = await fails(
        client.configs.UpsertApplicationConfig(
            cfg.UpsertApplicationConfigRequest(
                config=cfg.ApplicationConfig(app_id=app_id, environment="prod", version=1),
                update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
            ),
            metadata=AUTH,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    await client.configs.UpsertApplicationConfig(
        cfg.UpsertApplicationConfigRequest(
            config=cfg.ApplicationConfig(app_id=app_id, environment="dev")
        ),
        metadata=AUTH,
    )
    page1 = await client.configs.ListApplicationConfigs(
        cfg.ListApplicationConfigsRequest(app_id=app_id, page_size=1), metadata=READ
    )
    page2 = await client.configs.ListApplicationConfigs(
        cfg.ListApplicationConfigsRequest(
            app_id=app_id, page_size=1, page_token=page1.next_page_token
        ),
        metadata=READ,
    )
    assert [c.environment for c in (*page1.configs, *page2.configs)] == ["dev", "prod"]
    assert page2.next_page_token == ""
    got = await client.configs.GetApplicationConfig(
        cfg.GetApplicationConfigRequest(app_id=app_id, environment="prod"), metadata=READ
    )
    assert got.config == updated.config


@pytest.mark.parametrize(
    ("config", "code"),
    [
        (cfg.ApplicationConfig(environment="prod"), grpc.StatusCode.INVALID_ARGUMENT),
        (cfg.ApplicationConfig(app_id="app_x", environment="prod"), grpc.StatusCode.NOT_FOUND),
        (
            cfg.ApplicationConfig(app_id="APP", environment="Bad Env"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_config_errors(
    client: Client, config: cfg.ApplicationConfig, code: grpc.StatusCode
) -> None:
    exc = await fails(
        client.configs.UpsertApplicationConfig(
            cfg.UpsertApplicationConfigRequest(config=config), metadata=AUTH
        )
    )
    assert exc.code() == code


async def test_config_bad_environment_is_a_field_violation(client: Client) -> None:
    app_id = await new_app(client)
    exc = await fails(
        client.configs.UpsertApplicationConfig(
            cfg.UpsertApplicationConfigRequest(
                config=cfg.ApplicationConfig(app_id=app_id, environment="Bad Env")
            ),
            metadata=AUTH,
        )
    )
    assert list(field_violations(exc)) == ["config.environment"]


async def test_archived_application_is_a_failed_precondition(client: Client) -> None:
    app_id = await new_app(client)
    await client.apps.ArchiveApplication(
        apps.ArchiveApplicationRequest(id=app_id, version=1), metadata=AUTH
    )
    calls = [
        client.keys.CreateApiKey(
            keys.CreateApiKeyRequest(app_id=app_id, environment="prod"), metadata=AUTH
        ),
        client.configs.UpsertApplicationConfig(
            cfg.UpsertApplicationConfigRequest(
                config=cfg.ApplicationConfig(app_id=app_id, environment="prod")
            ),
            metadata=AUTH,
        ),
    ]
    for call in calls:
        exc = await fails(call)
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "archived" in (exc.details() or "")
