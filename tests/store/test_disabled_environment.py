"""A valid key of a disabled environment is refused with 403 `environment_disabled`
that says why, through the production resolver over real Postgres; never mistaken
for an invalid key (401)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.store.identity_cache import CachedIdentityResolver
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationConfigRepository,
    ApplicationRepository,
    Pool,
)
from tests.conftest import ListRecorder
from tests.extproc.messages import request_headers
from tests.store.conftest import dsn, pool, schema_dsn  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres


async def test_a_disabled_environment_is_a_403_that_says_so(
    pool: Pool,  # noqa: F811
    make_services: Callable[..., Services],
    recorder: ListRecorder,
) -> None:
    app = await ApplicationRepository(pool).create(org_id="acme", name="chat")
    keys = ApiKeyRepository(pool)
    created = await keys.create(app_id=app.id, environment="staging")
    configs = ApplicationConfigRepository(pool)
    await configs.create(app_id=app.id, environment="staging")
    await configs.update(app.id, "staging", version=1, enabled=False)
    resolver = CachedIdentityResolver(keys.resolve, keys.record_last_used)
    services = make_services(identities=resolver)

    response = await PolicyProcessor(services).on_request_headers(request_headers(created.secret))
    immediate = response.immediate_response
    error = json.loads(immediate.body)["error"]
    assert (immediate.status.code, error["code"], error["type"]) == (
        403, "environment_disabled", "permission_error",
    )  # fmt: skip
    assert "'staging'" in error["message"] and "disabled" in error["message"]
    assert "invalid" not in error["message"].lower()
    [record] = recorder.records
    assert (record.decision, record.status_code, record.app_id) == ("deny", 403, app.id)

    # Enabled again (the admin publishes an invalidation): the same key works.
    await configs.update(app.id, "staging", version=2, enabled=True)
    resolver.invalidate()
    again = await PolicyProcessor(services).on_request_headers(request_headers(created.secret))
    assert again.WhichOneof("response") == "request_headers"
