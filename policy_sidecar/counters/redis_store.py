"""Redis counter store: one Lua script, one round trip per request phase."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from policy_sidecar.counters.store import SettlingMixin
from policy_sidecar.counters.values import (
    MAX_COUNTER_VALUE,
    Adjustment,
    CheckResult,
    CounterOp,
    CounterStoreUnavailable,
)
from policy_sidecar.counters.windows import (
    bucket_key,
    build_result,
    plan_bucket,
    ttl_ms,
    validate_ops,
)
from policy_sidecar.redis_clients import (
    RedisClient,
    check_redis_url,
    is_cluster_url,
    open_cluster,
    parse_cluster_url,
    ready,
    send_on,
)

__all__ = ["COUNTER_SCRIPT", "RedisCounterStore"]

# KEYS: add: (current bucket, previous bucket) per op; adjust: one bucket per adjustment.
# ARGV[1] = 'add' | 'adjust'
#   add:    per op i, from 2 + 4*(i-1): limit, amount, previous-bucket weight, ttl ms
#           returns {denied op index or 0, prev_1, cur_1, prev_2, cur_2, ...} (before adding)
#   adjust: per bucket j, from 2 + 2*(j-1): delta, ttl ms; never below 0, never creates
#           a bucket for a negative delta. Returns the number of buckets.
# ARGV[#ARGV] = MAX_COUNTER_VALUE. A bucket is SET to the new value clamped to
# [0, max] (not INCRBY'd: that errors past 2**63 on a bogus huge amount); with both
# terms at most 1e15 the double arithmetic is exact, and '%.0f' prints every digit.
# The weighted rule must stay identical to windows.weighted().
COUNTER_SCRIPT = """
local mode = ARGV[1]
local max = tonumber(ARGV[#ARGV])
local function bounded(v)
  if v < 0 then return '0' end
  if v > max then v = max end
  return string.format('%.0f', v)
end
if mode == 'add' then
  local n = #KEYS / 2
  local out = {0}
  local denied = 0
  for i = 1, n do
    local base = 2 + 4 * (i - 1)
    local limit = tonumber(ARGV[base])
    local amount = tonumber(ARGV[base + 1])
    local weight = tonumber(ARGV[base + 2])
    local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
    local prev = 0
    if weight > 0 then
      prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    end
    local carried = 0
    if prev > 0 then
      carried = math.ceil(prev * weight)
    end
    if denied == 0 and cur + carried + amount > limit then
      denied = i
    end
    out[2 * i] = prev
    out[2 * i + 1] = cur
  end
  out[1] = denied
  if denied == 0 then
    for i = 1, n do
      local base = 2 + 4 * (i - 1)
      local amount = tonumber(ARGV[base + 1])
      if amount > 0 then
        local v = bounded(math.min(out[2 * i + 1], max) + math.min(amount, max))
        redis.call('SET', KEYS[2 * i - 1], v, 'PX', ARGV[base + 3])
      end
    end
  end
  return out
elseif mode == 'adjust' then
  for j = 1, #KEYS do
    local delta = tonumber(ARGV[2 * j])
    local cur = tonumber(redis.call('GET', KEYS[j]) or '0')
    if delta > 0 or cur > 0 then
      delta = math.max(math.min(delta, max), -max)
      local v = bounded(math.min(cur, max) + delta)
      redis.call('SET', KEYS[j], v, 'PX', ARGV[2 * j + 1])
    end
  end
  return #KEYS
end
return redis.error_reply('unknown mode ' .. tostring(mode))
"""

_MAX = str(MAX_COUNTER_VALUE)

_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
    asyncio.TimeoutError,
    # Redis Cluster: a failover under way, a slot nobody serves yet, no node reachable.
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
)


class _CounterCluster(RedisCluster):
    """Retries a command after a lost connection only (the client refreshes its slot map
    first), like the single Redis's pool: never after a timeout (a timed-out script may
    have run, and running it twice would count the request twice), nor during a failover
    (CLUSTERDOWN lasts seconds; the request fails open or closed at once instead)."""

    # The base class types this as its own 4-tuple; the retry loop only tests membership.
    ERRORS_ALLOW_RETRY = (RedisConnectionError,)  # type: ignore[assignment]


class RedisCounterStore(SettlingMixin):
    """``CounterStore`` on Redis (standalone, Sentinel or Cluster).

    Every call is one EVALSHA of ``COUNTER_SCRIPT`` (loaded on first use and again after
    NOSCRIPT, e.g. when Redis restarted). On Redis Cluster all keys of one call must share
    a hash tag (``counter_key`` puts the scope in braces): a call whose keys span several
    slots raises ``ValueError`` (a caller's bug) before anything is sent. Connection
    failures, timeouts and a cluster that is failing over raise
    ``CounterStoreUnavailable``; the client reconnects (and, on a cluster, refreshes its
    slot map) on the next call. Safe for concurrent use from one event loop.

    ``max_in_flight`` bounds the concurrent calls (callers wait for a turn at most
    ``wait_timeout`` seconds): the cluster client fails at once when a node's connections
    run out, where a single Redis's blocking pool waits.

    On a single Redis the ``adjust`` calls made in one event-loop step (the settling of
    one batch of access log lines: `extproc.log_consumer`) go as one script call, in
    the order they were made; each caller sees that call's outcome. The script applies
    its buckets one after the other, so this is what the calls would have done one by
    one, in one round trip instead of one each. (On a cluster their keys may live in
    different slots: each call goes alone.)
    """

    answers_at_once = False  # every call is a round trip to Redis (`CounterStore`)

    def __init__(
        self,
        client: RedisClient,
        *,
        max_in_flight: int | None = None,
        wait_timeout: float = 0.25,
    ) -> None:
        self._client = client
        self._script = client.register_script(COUNTER_SCRIPT)
        self._cluster = isinstance(client, RedisCluster)
        self._gate = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._wait_timeout = wait_timeout
        # The adjust calls of this event-loop step, sent together by `_send_adjusts`.
        self._adjusts: list[tuple[list[str], list[str], asyncio.Future[None]]] | None = None
        self._sending: set[asyncio.Future[Any]] = set()  # strong references
        # Single Redis: one pooled connection kept out of the pool between calls (see
        # `_eval_single`); None while a call uses it or before the first call.
        self._spare: AbstractConnection | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        max_connections: int = 64,
        client_name: str | None = None,
    ) -> RedisCounterStore:
        """A store with hot-path friendly defaults.

        One immediate retry on a dropped connection (a restarted server leaves stale
        pooled sockets), none on timeouts: a timed-out script may have run, and running
        it twice would count the request twice.

        A ``redis+cluster://`` URL (see ``policy_sidecar.redis_clients``) gives a Redis
        Cluster client with the same timeouts and retry rule; ``max_connections`` then
        bounds the calls in flight, and each node's pool holds up to twice as many (the
        penalty box shares the client).
        """
        check_redis_url(url)
        if is_cluster_url(url):
            cluster = open_cluster(
                parse_cluster_url(url),
                cluster_class=_CounterCluster,
                max_connections=2 * max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                client_name=client_name,
                retry=Retry(NoBackoff(), retries=1),
            )
            return cls(cluster, max_in_flight=max_connections, wait_timeout=connect_timeout)
        # A blocking pool: a burst of requests waits for a free connection (up to the
        # connect timeout) instead of failing with "too many connections".
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=connect_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            client_name=client_name,
            retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
        )
        client = Redis.from_pool(pool)
        return cls(client)

    @property
    def client(self) -> RedisClient:
        return self._client

    @property
    def is_cluster(self) -> bool:
        return self._cluster

    @property
    def script_sha(self) -> str:
        sha: str = self._script.sha
        return sha

    async def _run(self, keys: list[str], args: list[str]) -> Any:
        if self._cluster:
            _check_one_slot(keys)
        try:
            if self._gate is None:
                return await self._eval(keys, args)
            async with asyncio.timeout(self._wait_timeout):
                await self._gate.acquire()
            try:
                return await self._eval(keys, args)
            finally:
                self._gate.release()
        except _UNAVAILABLE as exc:
            raise CounterStoreUnavailable(f"redis unavailable: {exc}") from exc

    async def _eval(self, keys: list[str], args: list[str]) -> Any:
        if self._cluster:
            await ready(self._client)
            return await self._script(keys=keys, args=args)
        return await self._eval_single(keys, args)

    async def _eval_single(self, keys: list[str], args: list[str]) -> Any:
        """EVALSHA on one pooled connection with `send_on` (no ``execute_command``:
        ~40 % of a call's client CPU; the same retry rules), NOSCRIPT loading the
        script and sending again. One connection stays out of the pool between calls,
        so calls one after another skip the pool's lock and wait as well; concurrent
        calls take theirs from the (blocking) pool and give them back."""
        client = self._client
        assert isinstance(client, Redis)
        pool = client.connection_pool
        conn, self._spare = self._spare, None
        if conn is None:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            result = await self._evalsha_on(conn, keys, args)
        except BaseException:
            await pool.release(conn)
            raise
        if self._spare is None and pool.max_connections > 1:
            self._spare = conn  # never the pool's only connection: the penalty box shares it
        else:
            await pool.release(conn)
        return result

    async def _evalsha_on(self, conn: AbstractConnection, keys: list[str], args: list[str]) -> Any:
        try:
            return await send_on(conn, "EVALSHA", self._script.sha, len(keys), *keys, *args)
        except NoScriptError:  # e.g. Redis restarted with an empty script cache
            await send_on(conn, "SCRIPT", "LOAD", COUNTER_SCRIPT)
            return await send_on(conn, "EVALSHA", self._script.sha, len(keys), *keys, *args)

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        validate_ops(ops)
        plans = [plan_bucket(op, now) for op in ops]
        if not ops:
            return build_result(ops, plans, [], None, now)
        keys: list[str] = []
        args: list[str] = ["add"]
        for op, plan in zip(ops, plans, strict=True):
            keys += [plan.cur_key, plan.prev_key]
            args += [str(op.limit), str(op.amount), repr(plan.prev_weight), str(plan.ttl_ms)]
        raw = await self._run(keys, [*args, _MAX])
        denied = int(raw[0])
        observed = [(int(raw[2 * i + 1]), int(raw[2 * i + 2])) for i in range(len(ops))]
        return build_result(ops, plans, observed, denied - 1 if denied else None, now)

    async def adjust(self, adjustments: Sequence[Adjustment], now: float) -> None:
        keys: list[str] = []
        args: list[str] = ["adjust"]
        for adj in adjustments:
            ttl = ttl_ms(adj.window, adj.bucket_start, now)
            if ttl <= 0 or adj.delta == 0:
                continue  # the bucket no longer counts anywhere
            keys.append(bucket_key(adj.key, adj.window, adj.bucket_start))
            args += [str(adj.delta), str(ttl)]
        if not keys:
            return
        if self._cluster:
            await self._run(keys, [*args, _MAX])
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._adjusts is None:
            self._adjusts = []
            asyncio.get_running_loop().call_soon(self._send_adjusts)
        self._adjusts.append((keys, args[1:], waiter))
        await waiter

    def _send_adjusts(self) -> None:
        calls, self._adjusts = self._adjusts or [], None
        keys: list[str] = []
        args: list[str] = ["adjust"]
        for call_keys, call_args, _ in calls:
            keys += call_keys
            args += call_args
        # Its own task: a caller that stops waiting (cancelled) cancels nobody else's.
        sent = asyncio.ensure_future(self._run(keys, [*args, _MAX]))
        self._sending.add(sent)
        sent.add_done_callback(self._sending.discard)
        sent.add_done_callback(lambda done: _answer([w for _, _, w in calls], done))

    async def aclose(self) -> None:
        # The spare connection counts as in use for the pool, which disconnects it too.
        await self._client.aclose()


def _answer(waiters: Sequence[asyncio.Future[None]], done: asyncio.Future[Any]) -> None:
    """Every caller of a joint adjust call gets its outcome (unless it stopped waiting)."""
    error = None if done.cancelled() else done.exception()
    for waiter in waiters:
        if waiter.done():
            continue
        if done.cancelled():
            waiter.cancel()
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(None)


def _check_one_slot(keys: Sequence[str]) -> None:
    slots = {key_slot(k.encode()) for k in keys}
    if len(slots) > 1:
        raise ValueError(
            f"one counter call spans {len(slots)} Redis Cluster slots; the keys of one"
            f" call must share a hash tag: {list(keys)}"
        )
