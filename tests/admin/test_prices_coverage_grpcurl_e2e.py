"""Price versions and the metering coverage report through the real grpcurl binary
against `policy-sidecar admin` as its own process: per-unit and image prices on a
model, a version per price change, both listings paginated and validated."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from policy_sidecar.store.postgres import Pool, UsageRepository
from policy_sidecar.usage.record import UsageRecord

from .test_grpcurl_e2e import ADMIN, VIEWER, Grpcurl, admin_address

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["admin_address"]  # the fixture, shared with test_grpcurl_e2e
# What the session's log check (tests/log_secrets.py) looks for in the admin's log.
ADMIN_TOKENS = (ADMIN, VIEWER)


async def test_price_versions_are_listed_page_by_page(admin_address: tuple[str, int]) -> None:
    g = Grpcurl(admin_address[0])
    created = (
        await g.call(
            "ModelService/CreateModel",
            {
                "model": {
                    "name": "dall-e-3",
                    "provider": "openai",
                    "upstream_model": "dall-e-3",
                    "upstream_cluster": "upstream",
                    "unit_price_usd": "0.04",
                    "image_prices": {"1024x1024/hd": "0.08"},
                    "enabled": True,
                }
            },
        )
    )["model"]
    assert created["unitPriceUsd"] == "0.04"
    assert created["imagePrices"] == {"1024x1024/hd": "0.08"}
    first_version = created["priceVersion"]
    updated = (
        await g.call(
            "ModelService/UpdateModel",
            {
                "model": {
                    "id": created["id"],
                    "version": created["version"],
                    "image_prices": {"1024x1024/hd": "0.08", "1792x1024/hd": "0.12"},
                    "cache_write_5m_price_per_mtok": "3.75",
                    "long_context_threshold_tokens": 200000,
                },
                "update_mask": {
                    "paths": [
                        "image_prices",
                        "cache_write_5m_price_per_mtok",
                        "long_context_threshold_tokens",
                    ]
                },
            },
        )
    )["model"]
    assert int(updated["priceVersion"]) > int(first_version)
    assert updated["longContextThresholdTokens"] == "200000"

    page = await g.call("ModelService/ListPriceVersions", {"model": "dall-e-3", "page_size": 1})
    [v1] = page["priceVersions"]
    assert (v1["version"], v1["imagePrices"]) == (first_version, {"1024x1024/hd": "0.08"})
    rest = await g.call(
        "ModelService/ListPriceVersions",
        {"model": "dall-e-3", "page_size": 1, "page_token": page["nextPageToken"]},
    )
    [v2] = rest["priceVersions"]
    assert v2["imagePrices"] == {"1024x1024/hd": "0.08", "1792x1024/hd": "0.12"}
    assert v2["cacheWrite5mPricePerMtok"] == "3.75"
    assert "nextPageToken" not in rest

    for body, field in (
        ({"page_size": 5000}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
    ):
        code, out = await g.rpc("ModelService/ListPriceVersions", "-d", json.dumps(body))
        assert code != 0 and "InvalidArgument" in out and field in out, out
    code, out = await g.rpc(
        "ModelService/CreateModel",
        "-d",
        json.dumps(
            {
                "model": {
                    "name": "bad-image",
                    "provider": "openai",
                    "upstream_model": "x",
                    "upstream_cluster": "upstream",
                    "image_prices": {"huge": "0.1", "1024x1024/hd": "-1"},
                }
            }
        ),
    )
    assert code != 0 and "InvalidArgument" in out
    assert "model.image_prices['huge']" in out and "model.image_prices['1024x1024/hd']" in out


async def test_the_coverage_report_lists_traffic_by_route_and_unit(
    admin_address: tuple[str, int], pool: Pool
) -> None:
    g = Grpcurl(admin_address[0])
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    def record(rid: str, **fields: object) -> UsageRecord:
        base: dict[str, object] = {
            "request_id": f"cov-{rid}",
            "started_at": start + timedelta(seconds=1),
            "decision": "allow",
            "status_code": 200,
            "usage_reported": True,
        }
        return UsageRecord(**{**base, **fields})  # type: ignore[arg-type]

    await UsageRepository(pool).insert_batch(
        [
            record(
                "img", provider="openai", operation="images", unit="images", quantity=2.0,
                cost_usd=0.16,
            ),
            record(
                "img2", provider="openai", operation="images", unit="images", quantity=1.0,
                cost_usd=0.08,
            ),
            # allow_and_report let it through without a price: what `deny` would refuse.
            record(
                "tts", provider="openai", operation="speech", unit="characters", quantity=44.0,
                cost_usd=None,
            ),
            record(
                "deny", provider="openai", operation="speech", unit="characters",
                decision="deny", status_code=403, usage_reported=False,
            ),
            record("free", decision="allow", usage_reported=False),
        ]
    )  # fmt: skip
    window = {
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": (start + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
    }
    entries = []
    token = ""
    while True:
        page = await g.call(
            "UsageService/GetUsageCoverage", {**window, "page_size": 1, "page_token": token}
        )
        entries += page["entries"]
        token = page.get("nextPageToken", "")
        if not token:
            break
    by_route = {(e.get("operation", ""), e.get("unit", "")): e for e in entries}
    images = by_route[("images", "images")]
    assert (images["requests"], images["allowed"], images["quantity"], images["costUsd"]) == (
        "2",
        "2",
        "3",
        "0.24",
    )
    speech = by_route[("speech", "characters")]
    assert (speech["requests"], speech["denied"], speech["unpricedAllowed"]) == ("2", "1", "1")
    assert by_route[("", "")]["requests"] == "1"  # no metered route: still counted

    too_long = {**window, "end_time": (start + timedelta(days=40)).isoformat()[:19] + "Z"}
    for body, field in (
        (too_long, "end_time"),
        ({"start_time": window["start_time"]}, "end_time"),
        ({**window, "page_token": "x"}, "page_token"),
    ):
        code, out = await g.rpc("UsageService/GetUsageCoverage", "-d", json.dumps(body))
        assert code != 0 and "InvalidArgument" in out and field in out, out
