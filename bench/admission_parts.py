"""CPU of the body phase's parts in process: the admission and what surrounds it.

    cd /tmp && PYTHONPATH=<checkout> python <checkout>/bench/admission_parts.py

One request of `request_path.py` (every policy type loaded, in-memory counters, none
denying) driven through both phases once, then each part timed alone in a loop:
`Enforcer.admit` and, inside it, the local pre-checks, the counter ops, the in-memory
store's ``check_and_add`` and the interpretation (rate-limit headers, charges); beside
it the body's parsing and the token estimate. Process CPU time, best and median of
``--rounds`` rounds, µs per call. Run it against two checkouts, interleaved, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.request_path import BODY
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.providers import load_request
from policy_sidecar.tokens import load_estimator
from tests.conftest import KEY, ListRecorder
from tests.extproc.drive import limit_services
from tests.extproc.messages import body, request_headers


async def main(rounds: int, n: int) -> None:
    services = dataclasses.replace(
        limit_services(ListRecorder(), load_estimator(None)), worker="50051"
    )
    p = PolicyProcessor(services)
    await p.on_request_headers(request_headers(KEY, path="/v1/chat/completions", body=BODY))
    await p.on_request_body(body(BODY))
    assert p._identity is not None and p._engine is not None and p._facts is not None
    assert p._provider is not None and p._route is not None
    identity, engine, enforcer = p._identity, p._engine, services.enforcer
    ctx, now = p._facts.pre_context(), services.clock()
    deployment = services.models.get("gpt-4o-mini")
    policies = engine.counters(identity, ctx.model)
    ops = [q.op(identity, ctx, deployment) for q in policies]
    counters = enforcer._counters
    result = await counters.check_and_add(ops, now)
    provider, route = p._provider, p._route
    parsed = provider.parse_request(route, load_request(route, BODY, "application/json"))

    def show(label: str, per_call: list[float]) -> None:
        print(
            f"{label:24s} best {min(per_call):7.1f}  median {statistics.median(per_call):7.1f} µs"
        )

    async def timed_async(label: str, f: Callable[[], Awaitable[Any]]) -> None:
        out = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(n):
                await f()
            out.append((time.process_time() - started) / n * 1e6)
        show(label, out)

    def timed(label: str, f: Callable[[], Any]) -> None:
        out = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(n):
                f()
            out.append((time.process_time() - started) / n * 1e6)
        show(label, out)

    await timed_async("admit", lambda: enforcer.admit(engine, identity, ctx, deployment))
    timed("  pre_check", lambda: engine.pre_check(identity, ctx))
    timed("  counter ops", lambda: [q.op(identity, ctx, deployment) for q in policies])
    await timed_async("  check_and_add", lambda: counters.check_and_add(ops, now))
    local = engine.pre_check(identity, ctx)
    amounts = [o.amount for o in ops]
    timed(
        "  interpret",
        lambda: enforcer._interpret(local, policies, ops_amounts=amounts, result=result, now=now),
    )
    timed(
        "parse the body",
        lambda: provider.parse_request(route, load_request(route, BODY, "application/json")),
    )
    timed("token estimate", lambda: services.estimator.estimate(provider.name, parsed))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls))
