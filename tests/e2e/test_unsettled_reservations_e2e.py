"""A reservation whose request never went upstream is given back, through the real Envoy.

The policy filter's body phase reserves tokens, then answers Envoy. When the client
goes away in between, Envoy drops the request (and the body response with its facts):
its access log line carries no facts to settle. Here the sidecar workers run in this
process (the real `ExternalProcessor`, `Completer` and counter stores; the counter
store held right after it reserved, so the client can be cut at exactly that moment)
behind a real Envoy, whose access log lines are then read by each worker as the
sidecar does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from policy_sidecar.cli.launcher import Stack, new_stack
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import (
    Adjustment,
    CheckResult,
    CounterOp,
    Reservation,
)
from policy_sidecar.envoy.access_log import log_path
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.extproc.server import ExternalProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy.context import PreRequestContext
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.providers.registry import default_registry
from policy_sidecar.store.standalone import StandaloneIdentityResolver, parse_standalone_config
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.record import UsageRecord
from tests.conftest import ListRecorder

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = "ps-reserve-key-0123456789abcdef"
LIMIT = 10**9


def config_text(org: str) -> str:
    return f"""
version: 1
applications:
  - id: res-app
    org_id: {org}
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.1, output_price_per_mtok: 1}}
policies:
  - id: tok-day
    name: tokens a day
    type: token_limit
    config: {{limit: {LIMIT}, window: 1d, count: total}}
"""


class HeldStore:
    """A real counter store whose ``check_and_add`` is held, once armed, right after it
    reserved: the moment between admission and Envoy applying the body response."""

    answers_at_once = False  # it holds a call: the enforcer shields it

    def __init__(self, inner: CounterStore) -> None:
        self.inner = inner
        self.armed = False
        self.reserved = asyncio.Event()
        self.go = asyncio.Event()
        self.finished = asyncio.Event()

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        result = await self.inner.check_and_add(ops, now)
        if self.armed:
            self.armed = False
            self.reserved.set()
            try:
                await self.go.wait()
            finally:
                self.finished.set()
        return result

    async def adjust(self, adjustments: Sequence[Adjustment], now: float) -> None:
        await self.inner.adjust(adjustments, now)

    async def settle(self, reservation: Reservation, actual: Mapping[str, int], now: float) -> None:
        await self.inner.settle(reservation, actual, now)

    async def release(self, reservation: Reservation, now: float) -> None:
        await self.inner.release(reservation, now)

    async def aclose(self) -> None:
        pass


class WatchedProcessor(ExternalProcessor):
    """The real service, noting when Envoy resets a policy stream (grpc cancels the
    handler). ``deaf``: the stream's processing goes on regardless, as when the body
    phase's answer was already on its way when Envoy dropped the request: only the
    access log line can tell then."""

    def __init__(self, services: Services, *, worker: str) -> None:
        super().__init__(services, worker=worker)
        self.deaf = False
        self.cancelled = False
        self._on: set[asyncio.Task[None]] = set()

    async def Process(self, request_iterator: Any, context: Any) -> None:
        if not self.deaf:
            try:
                await super().Process(request_iterator, context)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            return
        task = asyncio.ensure_future(super().Process(request_iterator, context))
        self._on.add(task)
        task.add_done_callback(self._done)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def _done(self, task: asyncio.Task[None]) -> None:
        self._on.discard(task)
        if not task.cancelled():
            task.exception()  # writing to the reset stream fails: expected here


@dataclass
class Worker:
    port: int
    services: Services
    store: HeldStore
    processor: WatchedProcessor
    consumer: LogConsumer
    offset: int = 0
    records: list[UsageRecord] = field(default_factory=list)


@dataclass
class Env:
    stack: Stack
    workers: list[Worker]
    store: CounterStore

    async def read_logs(self) -> None:
        """Each worker reads its own access log file, as the sidecar's tailer does."""
        for w in self.workers:
            path = log_path(self.stack.access_log_dir, w.port)
            if not path.exists():
                continue
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            lines = data[w.offset : end].splitlines()
            w.offset = end
            if lines:
                w.records += await w.consumer.records(lines)
            await w.services.tasks.drain()

    async def used(self) -> int:
        """Tokens counted today for the application (a zero-amount probe)."""
        services = self.workers[0].services
        identity = await services.identities.resolve(KEY)
        assert identity is not None
        engine = await services.policies.engine_for(identity)
        (policy,) = engine.counters(identity, "gpt-4o-mini")
        ctx = PreRequestContext(
            request_size_bytes=0,
            estimated_tokens=0,
            model="gpt-4o-mini",
            org_id=identity.org_id,
            app_id=identity.app_id,
            environment=identity.environment,
            provider="openai",
            stream=False,
            max_tokens=None,
        )
        op = policy.op(identity, ctx, None)
        probe = CounterOp(op.key, op.limit, op.window, 0)
        result = await self.store.check_and_add([probe], time.time())
        return result.states[0].used

    async def used_becomes(self, expected: int) -> int:
        """The count once the give-backs (tasks of their own) have run."""
        for _ in range(200):
            used = await self.used()
            if used == expected:
                break
            await asyncio.sleep(0.02)
        return used


def line_for(stack: Stack, request_id: str) -> tuple[Path, dict[str, Any]] | None:
    for path in sorted(stack.access_log_dir.glob("access-*.log")):
        for raw in path.read_text().splitlines():
            line = json.loads(raw)
            if line.get("id") == request_id:
                return path, line
    return None


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    org = f"org-{uuid.uuid4().hex[:10]}"  # Redis counters outlive the test
    config = parse_standalone_config(config_text(org), source="reserve.yaml")
    store: CounterStore
    if request.param == "memory":
        store = InMemoryCounterStore()  # one store for both workers, as Redis would be
    else:
        store = RedisCounterStore.from_url(REDIS_URL, socket_timeout=5.0, connect_timeout=5.0)
    stack = new_stack(tmp_path, workers=2)
    servers = []
    workers = []
    estimator = load_estimator()
    try:
        for port in stack.sidecar_ports:
            held = HeldStore(store)
            services = Services(
                identities=StandaloneIdentityResolver(config.keys),
                policies=StaticPolicySource(PolicyEngine(config.policies)),
                enforcer=Enforcer(held, InMemoryPenaltyBox()),
                providers=default_registry(),
                estimator=estimator,
                recorder=ListRecorder(),
                models=config.models,
                worker=str(port),
            )
            server = grpc.aio.server()
            processor = WatchedProcessor(services, worker=str(port))
            pb_grpc.add_ExternalProcessorServicer_to_server(processor, server)
            assert server.add_insecure_port(f"127.0.0.1:{port}") == port
            await server.start()
            servers.append(server)
            consumer = LogConsumer(Completer(services), _NoStore())
            workers.append(Worker(port, services, held, processor, consumer))
        stack.start_fake_provider()
        await asyncio.to_thread(stack.start_envoy)
        yield Env(stack, workers, store)
    finally:
        await asyncio.to_thread(stack.stop)
        for server in servers:
            await server.stop(None)
        await store.aclose()
        estimator.close()


class _NoStore:
    async def store(self, records: Sequence[UsageRecord]) -> bool:
        return True


def request_bytes(request_id: str) -> bytes:
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Say hello in a few words."}],
        }
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        "host: gateway\r\n"
        f"authorization: Bearer {KEY}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def complete_request(env: Env) -> str:
    rid = str(uuid.uuid4())
    reader, writer = await asyncio.open_connection("127.0.0.1", env.stack.listen_port)
    writer.write(request_bytes(rid))
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    writer.close()
    return rid


async def wait_for_line(env: Env, request_id: str) -> tuple[Path, dict[str, Any]]:
    for _ in range(500):
        found = line_for(env.stack, request_id)
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"Envoy wrote no access log line for {request_id}")


async def cut_after_admission(env: Env, *, deaf: bool, read_first: bool) -> str:
    """A request whose client goes away once a worker reserved its tokens, before Envoy
    has the body phase's answer; then each worker reads its access log."""
    for w in env.workers:
        w.store.armed, w.processor.deaf = True, deaf
    rid = str(uuid.uuid4())
    _, writer = await asyncio.open_connection("127.0.0.1", env.stack.listen_port)
    writer.write(request_bytes(rid))
    await writer.drain()
    waits = [asyncio.create_task(w.store.reserved.wait()) for w in env.workers]
    done, pending = await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    assert done, "no worker reserved"
    (holder,) = [w for w in env.workers if w.store.reserved.is_set()]
    for w in env.workers:
        w.store.armed = False
    writer.transport.abort()  # the client goes away
    path, line = await wait_for_line(env, rid)
    # The line names the worker and the ticket (the headers phase's metadata), not the
    # body phase's facts, and it is in the file of the worker that reserved.
    assert path == log_path(env.stack.access_log_dir, holder.port)
    assert set(line["ps"]) == {"w", "tk"} and line["ps"]["w"] == str(holder.port)
    assert "DC" in line["flags"].split(",")
    if read_first:  # the reader is faster than the admission
        await env.read_logs()
    holder.store.go.set()  # the body phase goes on: its answer reaches nobody
    await holder.store.finished.wait()
    for _ in range(10):  # the rest of the body phase has no await
        await asyncio.sleep(0)
    assert holder.processor.cancelled  # Envoy did reset the policy stream
    await env.read_logs()
    writer.close()
    return rid


@pytest.mark.parametrize(
    ("deaf", "read_first"),
    [(False, False), (True, False), (True, True)],
    ids=["cancelled-while-reserving", "answer-lost", "line-before-admission"],
)
async def test_a_client_gone_after_admission_gives_its_reservation_back(
    env: Env, deaf: bool, read_first: bool
) -> None:
    # A served request first: the counter holds what it really used.
    served = await complete_request(env)
    await wait_for_line(env, served)
    await env.read_logs()
    baseline = await env.used()
    assert baseline > 0
    rid = await cut_after_admission(env, deaf=deaf, read_first=read_first)
    assert await env.used_becomes(baseline) == baseline
    assert all(len(w.services.pending) == 0 for w in env.workers)
    (record,) = [r for w in env.workers for r in w.records if r.request_id == rid]
    assert record.total_tokens == 0 and not record.usage_reported
    if deaf and not read_first:
        # Recorded from the facts the worker kept: who asked, for which model.
        assert (record.decision, record.app_id, record.requested_model) == (
            "incomplete",
            "res-app",
            "gpt-4o-mini",
        )
        assert record.estimated_tokens > 0
    else:
        assert record.decision == "error"
    # The workers go on settling the next requests as usual.
    again = await complete_request(env)
    await wait_for_line(env, again)
    await env.read_logs()
    assert await env.used_becomes(2 * baseline) == 2 * baseline
