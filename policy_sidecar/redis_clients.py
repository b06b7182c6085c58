"""Redis clients from one URL: a single Redis or a Redis Cluster.

- ``redis://[user:pass@]host:port/db``, ``rediss://…`` (TLS), ``unix:///path.sock``:
  one Redis (``redis.asyncio.Redis``);
- ``redis+cluster://[user:pass@]host:port,host:port,…``, ``rediss+cluster://…`` (TLS):
  a Redis Cluster (``redis.asyncio.cluster.RedisCluster``).

A cluster URL lists one or more startup nodes (any reachable one is enough: the client
discovers the others and the slot map from it); the port defaults to 6379, an IPv6
address goes in brackets. A cluster has database 0 only, so the path must be empty,
``/`` or ``/0``. Query options (``?ssl_cert_reqs=…``) are redis-py's, as for a single
Redis. Errors never repeat the URL: it may hold a password.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import SplitResult, urlsplit

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "ClusterUrl",
    "RedisClient",
    "RedisUrlError",
    "check_redis_url",
    "is_cluster_url",
    "open_cluster",
    "open_redis",
    "parse_cluster_url",
    "ready",
    "send_on",
    "single_command",
]

#: What every Redis user of the package accepts: one server or a cluster.
RedisClient: TypeAlias = Redis | RedisCluster

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SINGLE_SCHEMES = ("redis", "rediss", "unix")
_EXPECTED = (
    "expected redis://host:port/db, rediss://…, unix:///path or"
    " redis+cluster://host:port,host:port (rediss+cluster:// for TLS)"
)


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message never contains the URL."""


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A parsed cluster URL: the startup nodes, and a single-node URL carrying the
    credentials, TLS and query options every node connection shares."""

    nodes: tuple[tuple[str, int], ...]
    base_url: str = field(repr=False)  # may hold a password


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket; the message has no URL
        raise RedisUrlError(f"malformed URL: {exc}") from None


def is_cluster_url(url: str) -> bool:
    return _split(url).scheme.lower() in _CLUSTER_SCHEMES


def check_redis_url(url: str) -> None:
    """Raise ``RedisUrlError`` for a URL neither client can use."""
    scheme = _split(url).scheme.lower()
    if scheme in _CLUSTER_SCHEMES:
        parse_cluster_url(url)
    elif not scheme:
        raise RedisUrlError(f"no scheme; {_EXPECTED}")
    elif scheme not in _SINGLE_SCHEMES:
        raise RedisUrlError(f"unknown scheme {scheme}://; {_EXPECTED}")


def parse_cluster_url(url: str) -> ClusterUrl:
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in _CLUSTER_SCHEMES:
        raise RedisUrlError(f"not a cluster URL; {_EXPECTED}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not hosts:
        raise RedisUrlError("a cluster URL names at least one node: redis+cluster://host:port")
    nodes = tuple(_node(item) for item in hosts.split(","))
    if parts.path not in ("", "/", "/0"):
        raise RedisUrlError("a Redis Cluster has database 0 only: remove the /<db> path")
    host, port = nodes[0]
    shown = f"[{host}]" if ":" in host else host
    query = f"?{parts.query}" if parts.query else ""
    base = f"{_CLUSTER_SCHEMES[scheme]}://{userinfo}{at}{shown}:{port}/0{query}"
    return ClusterUrl(nodes, base)


def _node(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise RedisUrlError("a cluster node's IPv6 address goes in brackets: [::1]:7000")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise RedisUrlError("a cluster node has an empty host: expected host:port,host:port")
    if not port_text:
        return host, 6379
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RedisUrlError(f"cluster node {host}: the port must be 1..65535")
    return host, int(port_text)


async def ready(client: RedisClient) -> RedisClient:
    """The client, its slot map loaded when it is a cluster client that has none (first
    use, or after a failover made it drop the map). Cheap once loaded.

    Call before a command: redis-py picks a command's node before it loads the map, so
    the first commands of a fresh (or reset) cluster client go to a random node, come
    back MOVED and, many at once, make it reset its connections under the other
    commands in flight."""
    if isinstance(client, RedisCluster):
        await client.initialize()
    return client


def open_redis(url: str, **kwargs: Any) -> RedisClient:
    """A client for ``url``; ``kwargs`` go to the connections (timeouts, client name,
    ``decode_responses``, …). Connects lazily, on the first command."""
    check_redis_url(url)
    if not is_cluster_url(url):
        return Redis.from_url(url.strip(), **kwargs)
    return open_cluster(parse_cluster_url(url), **kwargs)


def open_cluster(
    parsed: ClusterUrl, cluster_class: type[RedisCluster] = RedisCluster, **kwargs: Any
) -> RedisCluster:
    startup = [ClusterNode(host, port) for host, port in parsed.nodes]
    return cluster_class.from_url(parsed.base_url, startup_nodes=startup, **kwargs)


async def send_on(conn: AbstractConnection, *args: Any) -> Any:
    """One command on a connection taken from a single Redis's pool, without
    ``Redis.execute_command`` (its retry wrapper, observability hooks and response
    callbacks cost about as much client CPU as the rest of the call). The rules are
    those of the clients built here: one immediate retry after a lost connection (a
    stale pooled socket), none after a timeout (``read_response`` then drops the
    connection). The raw reply: no response callback runs (bytes, ints, lists).
    ``args`` are str, bytes or int; hiredis packs them (a tenth of redis-py's
    ``pack_command``, the same bytes) unless the connection encodes otherwise."""
    encoder = conn.encoder
    if encoder.encoding == "utf-8" and encoder.encoding_errors == "strict":
        packed: bytes | list[bytes] = hiredis.pack_command(args)
    else:
        packed = conn.pack_command(*args)
    retried = False
    while True:
        try:
            if not _write_at_once(conn, packed):
                await conn.send_packed_command(packed)
            return await conn.read_response()
        except RedisConnectionError:
            await conn.disconnect()
            if retried:
                raise
            retried = True


def _write_at_once(conn: AbstractConnection, packed: bytes | list[bytes]) -> bool:
    """Hand the command to the connection's transport when nothing is waiting to be sent
    (always, one small command at a time): what ``send_packed_command`` does, without
    the task its ``wait_for`` runs the write in (one event-loop turn per command). A
    transport that cannot send it keeps it and sends it when the socket is writable;
    Redis's answer is then awaited under the read timeout, and a broken socket shows
    there as a lost connection. False: not done (not connected, a health check due, a
    backlog, or a redis-py without the stream writer): send it redis-py's way."""
    writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
    if writer is None or conn.health_check_interval:
        return False
    transport = writer.transport
    if transport.is_closing() or transport.get_write_buffer_size():
        return False
    if isinstance(packed, bytes):
        writer.write(packed)
    else:
        writer.writelines(packed)
    return True


async def single_command(client: Redis, *args: Any) -> Any:
    """`send_on` a connection from ``client``'s pool, given back afterwards."""
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await send_on(conn, *args)
    finally:
        await pool.release(conn)
