"""How the Redis store's client is set up: timeouts, pool size, and which failures it
retries (a dropped connection once; a timeout never: the script may have run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.values import CounterOp, CounterStoreUnavailable, Window, WindowUnit

pytestmark = pytest.mark.redis

OP = CounterOp("ps:{app:x}:settings", 5, Window(WindowUnit.MINUTE), 1)
T0 = 1_768_435_200.0


class ScriptInterceptor:
    """A TCP proxy in front of the real Redis that passes everything through except the
    counter script's EVALSHA, which it counts and then drops the connection on
    (``mode="drop"``) or never answers (``mode="stall"``); ``mode="pass"`` forwards all."""

    def __init__(self, upstream: tuple[str, int], mode: str) -> None:
        self.upstream = upstream
        self.mode = mode
        self.scripts_seen = 0
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        pump = asyncio.create_task(downstream())
        try:
            while data := await reader.read(65536):
                if self.mode != "pass" and b"EVALSHA" in data.upper():
                    self.scripts_seen += 1
                    if self.mode == "drop":
                        break
                    self._held.append(writer)  # never answered, never closed by us
                    continue
                up_writer.write(data)
                await up_writer.drain()
        finally:
            pump.cancel()
            up_writer.close()
            if writer not in self._held:
                writer.close()

    async def aclose(self) -> None:
        for writer in self._held:
            writer.close()
        if self._server is not None:
            self._server.close()


@pytest.fixture
def upstream(redis_url: str) -> tuple[str, int]:
    parts = urlsplit(redis_url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


@pytest.fixture
async def interceptor(
    request: pytest.FixtureRequest, upstream: tuple[str, int]
) -> AsyncIterator[ScriptInterceptor]:
    proxy = ScriptInterceptor(upstream, request.param)
    yield proxy
    await proxy.aclose()


def test_hot_path_defaults() -> None:
    store = RedisCounterStore.from_url("redis://127.0.0.1:1/0")
    pool = store.client.connection_pool
    assert pool.max_connections == 64
    assert pool.timeout == 0.25  # type: ignore[attr-defined]  # waiting for a free connection
    assert pool.connection_kwargs["socket_timeout"] == 0.25
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.25


def test_settings_reach_the_pool() -> None:
    store = RedisCounterStore.from_url(
        "redis://127.0.0.1:1/0", socket_timeout=1.5, connect_timeout=2.5, max_connections=7
    )
    pool = store.client.connection_pool
    assert pool.max_connections == 7
    assert pool.timeout == 2.5  # type: ignore[attr-defined]
    assert pool.connection_kwargs["socket_timeout"] == 1.5
    assert pool.connection_kwargs["socket_connect_timeout"] == 2.5


@pytest.mark.parametrize("interceptor", ["drop"], indirect=True)
async def test_a_dropped_connection_is_retried_once(interceptor: ScriptInterceptor) -> None:
    port = await interceptor.start()
    store = RedisCounterStore.from_url(
        f"redis://127.0.0.1:{port}/0", socket_timeout=10, connect_timeout=10
    )
    try:
        with pytest.raises(CounterStoreUnavailable, match=r"^redis unavailable: "):
            await store.check_and_add([OP], T0)
    finally:
        await store.aclose()
    assert interceptor.scripts_seen == 2


@pytest.mark.parametrize("interceptor", ["stall"], indirect=True)
async def test_a_timed_out_script_is_never_sent_twice(interceptor: ScriptInterceptor) -> None:
    interceptor.mode = "pass"
    port = await interceptor.start()
    # the socket timeout is the point of the test, not a deadline on the machine
    store = RedisCounterStore.from_url(
        f"redis://127.0.0.1:{port}/0", socket_timeout=1.0, connect_timeout=10
    )
    try:
        # a connection already made and pooled: the timeout can only hit the script
        assert (await store.check_and_add([CounterOp(OP.key, 5, OP.window, 0)], T0)).admitted
        interceptor.mode = "stall"
        with pytest.raises(CounterStoreUnavailable, match=r"^redis unavailable: "):
            await store.check_and_add([OP], T0)
    finally:
        await store.aclose()
    assert interceptor.scripts_seen == 1
