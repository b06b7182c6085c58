"""Redis URLs: one server or a Redis Cluster (``redis+cluster://``), checked when the
settings are read, with errors that name the variable and never repeat the URL."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from policy_sidecar.admin.settings import AdminSettings
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.limits.penalties import RedisPenaltyBox
from policy_sidecar.redis_clients import (
    RedisUrlError,
    check_redis_url,
    is_cluster_url,
    open_redis,
    parse_cluster_url,
)
from policy_sidecar.wiring.settings import Settings, SettingsError
from policy_sidecar.wiring.sidecar import build_counters

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "nodes", "base"),
    [
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            (("10.0.0.1", 7000), ("10.0.0.2", 7001)),
            "redis://10.0.0.1:7000/0",
        ),
        ("redis+cluster://cache", (("cache", 6379),), "redis://cache:6379/0"),
        ("redis+cluster://cache:6380/", (("cache", 6380),), "redis://cache:6380/0"),
        ("redis+cluster://cache/0", (("cache", 6379),), "redis://cache:6379/0"),
        (
            f"rediss+cluster://app:{SECRET}@a:7000,b:7000/?ssl_cert_reqs=none",
            (("a", 7000), ("b", 7000)),
            f"rediss://app:{SECRET}@a:7000/0?ssl_cert_reqs=none",
        ),
        ("redis+cluster://[::1]:7000,[fe80::2]", (("::1", 7000), ("fe80::2", 6379)), None),
    ],
)
def test_cluster_urls_name_the_startup_nodes(
    url: str, nodes: tuple[tuple[str, int], ...], base: str | None
) -> None:
    assert is_cluster_url(url)
    parsed = parse_cluster_url(url)
    assert parsed.nodes == nodes
    if base is not None:
        assert parsed.base_url == base
    check_redis_url(url)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://cache:6379", "unknown scheme http://"),
        ("cache:6379", "unknown scheme cache://"),
        ("//cache:6379", "no scheme"),
        ("redis+cluster://", "at least one node"),
        (f"redis+cluster://user:{SECRET}@", "at least one node"),
        ("redis+cluster://a:7000,,b:7001", "empty host"),
        ("redis+cluster://a:7000,:7001", "empty host"),
        ("redis+cluster://a:port", "cluster node a: the port must be 1..65535"),
        ("redis+cluster://a:70000", "the port must be 1..65535"),
        ("redis+cluster://a:0", "the port must be 1..65535"),
        ("redis+cluster://[::1:7000", "malformed URL: Invalid IPv6 URL"),
        ("redis+cluster://[::1]7000", "IPv6 address goes in brackets"),
        ("redis+cluster://a:7000/1", "database 0 only"),
    ],
)
def test_bad_urls_are_refused_with_a_precise_error(url: str, error: str) -> None:
    with pytest.raises(RedisUrlError, match=error):
        check_redis_url(url)


def test_single_server_urls_are_left_to_redis_py() -> None:
    for url in ("redis://h:6379/2", "rediss://u:p@h:6380/0", "unix:///run/redis.sock"):
        check_redis_url(url)
        assert not is_cluster_url(url)


async def test_the_url_chooses_the_client() -> None:
    single = open_redis("redis://127.0.0.1:6379/0")
    cluster = open_redis("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    try:
        assert type(single) is Redis
        assert isinstance(cluster, RedisCluster)
        assert {(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()} == {
            ("127.0.0.1", 7000),
            ("127.0.0.1", 7001),
        }
    finally:
        await single.aclose()
        await cluster.aclose()


def test_the_sidecar_setting_is_checked_and_never_echoes_the_url() -> None:
    good = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
    assert Settings.from_env({"POLICY_SIDECAR_REDIS_URL": good}).redis_url == good
    bad = f"redis+cluster://app:{SECRET}@10.0.0.1:7000/3"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"POLICY_SIDECAR_REDIS_URL": bad})
    message = str(caught.value)
    assert message.startswith("POLICY_SIDECAR_REDIS_URL: a Redis Cluster has database 0 only")
    assert SECRET not in message


def test_the_admin_setting_is_checked_too() -> None:
    env = {
        "POLICY_SIDECAR_DATABASE_URL": "postgresql://x/y",
        "POLICY_SIDECAR_ADMIN_TOKENS": "ops:admin:" + "t" * 32,
        "POLICY_SIDECAR_REDIS_URL": f"cluster://ops:{SECRET}@h:7000",
    }
    with pytest.raises(SettingsError) as caught:
        AdminSettings.from_env(env)
    assert str(caught.value).startswith("POLICY_SIDECAR_REDIS_URL: unknown scheme cluster://")
    assert SECRET not in str(caught.value)


async def test_the_sidecar_builds_cluster_counters_from_a_cluster_url() -> None:
    counters, penalties = build_counters(
        Settings(redis_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    )
    try:
        assert isinstance(counters, RedisCounterStore) and counters.is_cluster
        assert isinstance(penalties, RedisPenaltyBox)
    finally:
        await counters.aclose()
