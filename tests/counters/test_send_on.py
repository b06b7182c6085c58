"""`send_on`: the direct command path packs what redis-py would and keeps its retry rule."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from policy_sidecar.redis_clients import send_on

ARGS = ("EVALSHA", "0123abcd", 2, "ps:{org:ü}:a", "ps:{org:ü}:b", "add", "10", "0.25", 120000)


class Recording(Connection):
    """A connection that records what it would send and answers from a script."""

    def __init__(self, replies: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[bytes] = []
        self.replies = replies
        self.disconnects = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.sent.append(command if isinstance(command, bytes) else b"".join(command))

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def disconnect(self, nowait: bool = False, error: Exception | None = None) -> None:
        self.disconnects += 1


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
async def test_sends_the_bytes_redis_py_packs(encoding: str) -> None:
    conn = Recording([[0, 1]], encoding=encoding)
    assert await send_on(conn, *ARGS) == [0, 1]
    assert conn.sent == [b"".join(conn.pack_command(*ARGS))]


async def test_a_lost_connection_is_retried_once_then_fails() -> None:
    conn = Recording([RedisConnectionError("gone"), 7])
    assert await send_on(conn, "GET", "k") == 7
    assert len(conn.sent) == 2 and conn.disconnects == 1
    conn = Recording([RedisConnectionError("gone"), RedisConnectionError("still")])
    with pytest.raises(RedisConnectionError):
        await send_on(conn, "GET", "k")
    assert len(conn.sent) == 2


async def test_a_timeout_is_never_sent_again() -> None:
    conn = Recording([RedisTimeoutError("slow"), 7])
    with pytest.raises(RedisTimeoutError):
        await send_on(conn, "EVALSHA", "sha", 0)
    assert len(conn.sent) == 1


@pytest.mark.redis
async def test_a_connected_command_goes_straight_to_the_transport(redis_url: str) -> None:
    # The direct write (no task per command) is what makes the path cheap: a redis-py
    # without the stream writer it uses would fall back silently, and fail here.
    client = Redis.from_url(redis_url)
    conn = await client.connection_pool.get_connection()
    try:
        await conn.connect()

        async def refuse(command: Any, check_health: bool = True) -> None:
            raise AssertionError("sent through send_packed_command")

        conn.send_packed_command = refuse  # type: ignore[method-assign]
        assert await send_on(conn, "PING") == b"PONG"
        assert await send_on(conn, "ECHO", "ü") == "ü".encode()
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()
