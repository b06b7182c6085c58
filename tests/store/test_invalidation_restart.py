"""A policy change made while Redis is down is in effect on the sidecar promptly after
Redis is back: the admin publisher retries, and the sidecar's subscription
re-validates its caches whenever it reconnects. Real Redis servers throughout."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from policy_sidecar.cli.ports import free_port
from policy_sidecar.store.invalidation import PolicyChange
from policy_sidecar.store.listener import CHANNEL, InvalidationListener
from policy_sidecar.store.policy_cache import CachedPolicySource
from policy_sidecar.store.postgres import PolicyRepository, Pool
from policy_sidecar.store.redis_publisher import PublishResult, RedisPolicyChangePublisher
from tests.store.conftest import dsn, pool, schema_dsn  # noqa: F401  (fixtures)
from tests.store.test_caches import REDIS_URL, WHO, allowed

REDIS_SERVER = "/usr/bin/redis-server"
# Longer than any poll below: a pass cannot come from a cache expiring.
TTL = 600
DEADLINE = 30.0


class TempRedis:
    """A throwaway redis-server on its own port that can be stopped, started, paused."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Returns once *this* server answers PING (not merely once something accepts
        connections on the port); fails at once if it exits (the port was taken)."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([REDIS_SERVER, *args], stdout=subprocess.DEVNULL)
        self._proc = proc
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited ({proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.05)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and accepted, nothing is answered."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None:
            self.resume()
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


@pytest.fixture
def temp_redis() -> Iterator[TempRedis]:
    server = TempRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _eventually(check: Callable[[], object], what: str) -> None:
    """Poll `check` (a function or a coroutine function) until it is true."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"not within {DEADLINE}s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_a_silently_reconnected_subscription_revalidates(redis: Redis) -> None:
    # redis-py's own retry reconnects and resubscribes inside listen() without
    # raising; whatever was published meanwhile is lost, so the caches must go.
    name = f"ps-listener-{uuid.uuid4().hex[:12]}"
    seen: list[str] = []

    async def on_change(kind: str) -> None:
        seen.append(kind)

    client = Redis.from_url(REDIS_URL, client_name=name)
    listener = InvalidationListener(client, on_change)
    listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        assert seen == []
        clients = await redis.client_list()
        [mine] = [c["id"] for c in clients if c.get("name") == name]
        await redis.client_kill_filter(_id=mine)
        await _eventually(lambda: "*" in seen, "re-validation after the reconnect")
        assert listener.revalidations == 1
    finally:
        await listener.close()
        await client.aclose()


@pytest.mark.redis
async def test_a_publish_that_keeps_failing_is_logged_counted_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    results: list[PublishResult] = []
    # Nothing listens on this port; no client-side retry, to keep the test short.
    client = Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    publisher = RedisPolicyChangePublisher(
        client, retry_for=0.5, first_delay=0.05, on_result=results.append
    )
    with caplog.at_level(logging.WARNING):
        await publisher.publish(PolicyChange(kind="policy", action="updated", id="pol_1"))
        await publisher.publish(PolicyChange(kind="policy", action="updated", id="pol_2"))
        await _eventually(lambda: results == ["failed", "failed"], "given up")
    assert publisher.pending == 0
    assert "pol_1 not published" in caplog.text and "pol_2 not published" in caplog.text
    await publisher.close()
    await client.aclose()


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_policy_change_made_while_redis_was_down_applies_once_it_is_back(
    pool: Pool,  # noqa: F811
    temp_redis: TempRedis,
) -> None:
    results: list[PublishResult] = []
    admin_redis = Redis.from_url(temp_redis.url)
    publisher = RedisPolicyChangePublisher(admin_redis, on_result=results.append)
    repo = PolicyRepository(pool, publisher)
    created = await repo.create(name="models", type="model_allowlist", config={"models": ["a"]})

    sidecar_redis = Redis.from_url(temp_redis.url)

    async def load() -> list[object]:
        return list((await repo.list(enabled=True, page_size=500)).items)

    source = CachedPolicySource(
        load,  # type: ignore[arg-type]
        sidecar_redis,
        local_ttl=TTL,
        redis_ttl=TTL,
        namespace=uuid.uuid4().hex,
    )

    async def on_change(kind: str) -> None:
        if kind in ("policy", "*"):
            await source.invalidate()

    listener = InvalidationListener(sidecar_redis, on_change)
    listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        assert allowed(await source.engine_for(WHO), "a")
        assert results == ["published"]

        temp_redis.stop()
        # The admin write commits and returns although Redis is down.
        await repo.update(created.id, version=created.version, config={"models": ["b"]})
        assert publisher.pending == 1
        temp_redis.start()

        async def changed() -> bool:
            return allowed(await source.engine_for(WHO), "b")

        await _eventually(changed, "the new policy in effect on the sidecar")
        await _eventually(lambda: results == ["published", "retried"], "the publish retried")
        assert listener.revalidations >= 1
    finally:
        await listener.close()
        await publisher.close()
        await admin_redis.aclose()
        await sidecar_redis.aclose()


@pytest.mark.redis
async def test_a_subscription_that_stops_answering_is_replaced_and_revalidates(
    temp_redis: TempRedis,
) -> None:
    # A stopped server (like a peer gone without a reset) keeps the connection open
    # and answers nothing: a read without a deadline would wait forever, and every
    # change published afterwards would be lost to this sidecar.
    seen: list[str] = []

    async def on_change(kind: str) -> None:
        seen.append(kind)

    client = Redis.from_url(temp_redis.url)
    listener = InvalidationListener(client, on_change, ping_after=0.2, answer_within=1.0)
    listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        temp_redis.pause()
        try:
            await _eventually(lambda: not listener.ready.is_set(), "the silent channel given up")
        finally:
            temp_redis.resume()
        await _eventually(lambda: "*" in seen, "re-validation once Redis answers again")
        await asyncio.wait_for(listener.ready.wait(), DEADLINE)
        admin = Redis.from_url(temp_redis.url)
        try:
            await admin.publish(CHANNEL, '{"kind": "policy"}')
        finally:
            await admin.aclose()
        await _eventually(lambda: "policy" in seen, "a change heard on the new subscription")
    finally:
        await listener.close()
        await client.aclose()


class HoldingProxy:
    """A loopback TCP proxy to ``port`` that holds back the client's SUBSCRIBE until
    ``release`` is set: the window in which the command is sent but not yet served."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def close(self) -> None:
        for task in self._pipes:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        for task in (self._pipe(reader, up_writer, hold=True), self._pipe(up_reader, writer)):
            self._pipes.add(asyncio.create_task(task))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if hold and b"SUBSCRIBE" in data.upper():
                    self.held.set()
                    await self.release.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@pytest.mark.redis
async def test_the_listener_is_ready_only_once_the_server_confirmed_the_subscription(
    temp_redis: TempRedis,
) -> None:
    # A change published after `ready` must be heard, and the re-validation after a
    # reconnect must come after the server subscribed us: a SUBSCRIBE sent but not yet
    # served (a busy server, a cluster bus relaying a PUBLISH first) hears nothing.
    seen: list[str] = []

    async def on_change(kind: str) -> None:
        seen.append(kind)

    proxy = HoldingProxy(temp_redis.port)
    client = Redis.from_url(await proxy.start())
    listener = InvalidationListener(client, on_change)
    listener.start()
    try:
        await asyncio.wait_for(proxy.held.wait(), 10)
        await asyncio.sleep(0.3)
        assert not listener.ready.is_set()
        proxy.release.set()
        await asyncio.wait_for(listener.ready.wait(), 10)
        admin = Redis.from_url(temp_redis.url)
        try:
            assert await admin.publish(CHANNEL, '{"kind": "policy"}') == 1
        finally:
            await admin.aclose()
        await _eventually(lambda: seen == ["policy"], "the change heard")
    finally:
        await listener.close()
        await client.aclose()
        await proxy.close()


@pytest.mark.redis
async def test_close_ends_the_listener_even_when_its_cancellation_came_out_as_a_timeout() -> None:
    # asyncio.timeout (ours, or redis-py's inside a read) turns a cancellation into
    # TimeoutError when its own deadline passes in the same step; the listener treats
    # TimeoutError as a lost connection. Seen under load: close() waited for good.
    async def on_change(kind: str) -> None:
        return None

    async def listen(_pubsub: object) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TimeoutError from None

    client = Redis.from_url(REDIS_URL)
    listener = InvalidationListener(client, on_change)
    listener._listen = listen  # type: ignore[method-assign,assignment]
    listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), 10)
        await asyncio.wait_for(listener.close(), 10)
        assert listener._task is not None and listener._task.done()
    finally:
        await client.aclose()
