"""Enforcement at the edge of the pure policy core: asks the engine, talks to the
counter store (one round trip for all counters of a request, a second one only for a
model on a provider account with quotas), settles afterwards."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import (
    Adjustment,
    CheckResult,
    CounterOp,
    CounterState,
    CounterStoreUnavailable,
    Reservation,
    Window,
    WindowUnit,
)
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.penalties import Penalty, PenaltyBox, penalty_key
from policy_sidecar.policy.account_limits import account_policies, answered_adjustments
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.decision import Decision, Violation
from policy_sidecar.policy.engine import PolicyEngine, merge
from policy_sidecar.policy.limits import CounterPolicy, TokenLimitPolicy
from policy_sidecar.providers.base import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Charge:
    """A token-limit reservation, settled to actual usage when the response ends."""

    key: str
    window: Window
    bucket_start: int
    amount: int
    count: str  # total | prompt | completion | cost_usd

    def to_list(self) -> list[object]:
        return [
            self.key,
            self.window.unit.value,
            self.window.count,
            self.bucket_start,
            self.amount,
            self.count,
        ]

    @classmethod
    def from_list(cls, item: Sequence[object]) -> Charge:
        key, unit, count, start, amount, kind = (str(v) for v in item)
        return cls(
            key,
            Window(WindowUnit(unit), int(float(count))),
            int(float(start)),
            int(float(amount)),
            kind,
        )


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Decision
    charges: tuple[Charge, ...] = ()
    # OpenAI-style x-ratelimit-* headers for the tightest limit of each unit.
    headers: dict[str, str] = field(default_factory=dict)
    # Set when the counter store was unreachable and fail-open let the request through.
    counters_unavailable: bool = False


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``1h2m3s``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rate_headers(
    policies: Sequence[CounterPolicy], states: Sequence[CounterState], now: float
) -> dict[str, str]:
    tightest: dict[str, tuple[CounterPolicy, CounterState]] = {}
    for policy, state in zip(policies, states, strict=True):
        if policy.shadow:
            continue
        unit = policy.header_unit
        if unit is None:
            continue
        best = tightest.get(unit)
        if best is None or state.remaining < best[1].remaining:
            tightest[unit] = (policy, state)
    headers: dict[str, str] = {}
    for unit, (policy, state) in tightest.items():
        limit, remaining, reset = _HEADER_NAMES.get(unit) or _header_names(unit)
        headers[limit] = str(policy.limit)
        headers[remaining] = str(max(state.remaining, 0))
        headers[reset] = duration(state.reset_at - now)
    return headers


def _header_names(unit: str) -> tuple[str, str, str]:
    return f"x-ratelimit-limit-{unit}", f"x-ratelimit-remaining-{unit}", f"x-ratelimit-reset-{unit}"


# The header names of the two families, built once.
_HEADER_NAMES = {unit: _header_names(unit) for unit in ("requests", "tokens")}


def _ignore(operation: str) -> None:
    pass


class Enforcer:
    """One per process. Safe for concurrent requests on one event loop.

    Records no metrics itself: each failed counter-store call is reported as a fact, the
    operation's name ("check", "settle", "penalty"), to ``store_errors``; the wiring
    passes the metric there.
    """

    def __init__(
        self,
        counters: CounterStore,
        penalties: PenaltyBox,
        clock: Callable[[], float] = time.time,
        store_errors: Callable[[str], None] = _ignore,
        accounts: Mapping[str, ProviderAccount] | None = None,
    ) -> None:
        self._counters = counters
        # Provider accounts by name (a live catalog): their quotas apply to their models.
        self._accounts: Mapping[str, ProviderAccount] = accounts or {}
        self._penalties = penalties
        self._clock = clock
        self._store_errors = store_errors
        self.unavailable_events = 0
        # Give-backs of admissions cancelled after they reserved (see `_reserve`).
        self._give_backs: set[asyncio.Task[None]] = set()
        # A store that never suspends (in process) cannot be cancelled mid-call.
        self._shield = not counters.answers_at_once

    async def admit(
        self,
        engine: PolicyEngine,
        identity: Identity,
        ctx: PreRequestContext,
        deployment: ModelDeployment | None,
    ) -> Admission:
        local = engine.pre_check(identity, ctx)
        if local.denial is not None:
            return Admission(local)
        now = self._clock()
        policies = engine.counters(identity, ctx.model)
        quotas = self._quotas(deployment)
        try:
            if engine.has_penalties(identity):
                penalty = await self._penalty(identity, now)
                if penalty is not None:
                    return Admission(merge(local, penalty))
            if not policies and not quotas:
                return Admission(local)
            result: CheckResult | None = None
            if policies:
                ops = [p.op(identity, ctx, deployment) for p in policies]
                result = await self._reserve(ops, now)
        except CounterStoreUnavailable as exc:
            return self._unavailable(local, policies, exc)
        if result is None:
            admission = Admission(local)
        else:
            admission = self._interpret(
                local, policies, ops_amounts=[o.amount for o in ops], result=result, now=now
            )
        if not quotas or admission.decision.denial is not None:
            return admission
        return await self._account_quotas(
            admission, quotas, identity, ctx, deployment, app_result=result, now=now
        )

    async def _reserve(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        """``check_and_add``, run to its end even when the request is cancelled while it
        waits (Envoy resets the policy stream when the client goes away): what it
        reserved is then given back at once, never left charged (docs/envoy.md). A store
        that answers without suspending needs no shield (a task per call costs)."""
        if not self._shield:
            return await self._counters.check_and_add(ops, now)
        call = asyncio.ensure_future(self._counters.check_and_add(ops, now))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(functools.partial(self._cancelled_call_done, now=now))
            raise

    def _cancelled_call_done(self, call: asyncio.Future[CheckResult], *, now: float) -> None:
        if call.cancelled() or call.exception() is not None:
            return  # nothing reserved (a store error is the request's, already gone)
        reservation = call.result().reservation
        if reservation is not None:
            self._give_back(reservation, now)

    def _give_back(self, reservation: Reservation, now: float) -> None:
        task = asyncio.get_running_loop().create_task(self._release(reservation, now))
        self._give_backs.add(task)
        task.add_done_callback(self._give_backs.discard)

    async def _release(self, reservation: Reservation, now: float) -> None:
        try:
            await self._counters.release(reservation, now)
        except CounterStoreUnavailable as exc:
            self._store_errors("settle")
            log.warning("could not give back a cancelled request's counters: %s", exc)

    def _quotas(self, deployment: ModelDeployment | None) -> tuple[CounterPolicy, ...]:
        if deployment is None or deployment.account is None:
            return ()
        account = self._accounts.get(deployment.account)
        return account_policies(account) if account is not None else ()

    async def _account_quotas(
        self,
        admission: Admission,
        quotas: Sequence[CounterPolicy],
        identity: Identity,
        ctx: PreRequestContext,
        deployment: ModelDeployment | None,
        *,
        app_result: CheckResult | None,
        now: float,
    ) -> Admission:
        """The account's counters, shared by every org: their keys hash to the account's
        slot, not the org's, so they take a second call (Redis Cluster forbids one script
        across slots). A denial gives back what the first call reserved."""
        ops = [q.op(identity, ctx, deployment) for q in quotas]
        try:
            result = await self._reserve(ops, now)
        except asyncio.CancelledError:
            if app_result is not None and app_result.reservation is not None:
                self._give_back(app_result.reservation, now)
            raise
        except CounterStoreUnavailable as exc:
            # The provider still enforces its own quota: fail open, like a limit would.
            self.unavailable_events += 1
            self._store_errors("check")
            log.warning("counter store unavailable for account quotas; failing open: %s", exc)
            return replace(admission, counters_unavailable=True)
        quota_admission = self._interpret(
            admission.decision, quotas, ops_amounts=[o.amount for o in ops], result=result, now=now
        )
        headers = _tightest(admission.headers, quota_admission.headers)
        if quota_admission.decision.denial is not None:
            if app_result is not None and app_result.reservation is not None:
                try:
                    await self._counters.release(app_result.reservation, now)
                except CounterStoreUnavailable as exc:
                    self._store_errors("settle")
                    log.warning("could not release a refused request's counters: %s", exc)
            return replace(quota_admission, headers=headers)
        return replace(
            quota_admission, charges=admission.charges + quota_admission.charges, headers=headers
        )

    def _interpret(
        self,
        local: Decision,
        policies: Sequence[CounterPolicy],
        *,
        ops_amounts: Sequence[int],
        result: CheckResult,
        now: float,
    ) -> Admission:
        states = result.states
        headers = rate_headers(policies, states, now)
        shadow = tuple(
            p.violation(s, amount, now)
            for p, s, amount in zip(policies, states, ops_amounts, strict=True)
            if p.shadow and s.used > p.limit
        )
        if not result.admitted:
            index = result.denied_index if result.denied_index is not None else 0
            denial = policies[index].violation(states[index], ops_amounts[index], now)
            return Admission(merge(local, Decision(denial=denial, shadow=shadow)), headers=headers)
        charges = tuple(
            Charge(e.key, e.window, e.bucket_start, e.amount, p.config.count)
            for p, e in zip(
                policies, result.reservation.entries if result.reservation else (), strict=True
            )
            if isinstance(p, TokenLimitPolicy)
        )
        # No shadow violation: the local decision as it is (merging would copy it).
        decision = merge(local, Decision(shadow=shadow)) if shadow else local
        return Admission(decision, charges=charges, headers=headers)

    def _unavailable(
        self, local: Decision, policies: Sequence[CounterPolicy], exc: CounterStoreUnavailable
    ) -> Admission:
        self.unavailable_events += 1
        self._store_errors("check")
        closed = [p for p in policies if not p.shadow and p.config.fail_mode == "closed"]
        if closed:
            d = closed[0].definition
            log.error("counter store unavailable; failing closed for policy %s: %s", d.id, exc)
            denial = Violation(
                policy_id=d.id,
                policy_name=d.name,
                policy_type=d.type,
                shadow=False,
                status=503,
                code="limits_unavailable",
                message=f"limits cannot be checked right now (policy '{d.name}' fails closed)",
                details={"policy_id": d.id, "policy_name": d.name},
            )
            return Admission(merge(local, Decision(denial=denial)))
        log.warning("counter store unavailable; failing open: %s", exc)
        return Admission(local, counters_unavailable=True)

    async def _penalty(self, identity: Identity, now: float) -> Decision | None:
        key = penalty_key(identity.org_id, identity.app_id, identity.environment)
        penalty = await self._penalties.until(key, now)
        if penalty is None:
            return None
        wait = max(1, int(penalty.until - now + 0.999))
        # Name the post-check policy that imposed the penalty, like every other denial
        # (penalties stored by an older version carry no policy: "penalty").
        policy_id = penalty.policy_id or "penalty"
        policy_name = penalty.policy_name or "post-check penalty"
        return Decision(
            denial=Violation(
                policy_id=policy_id,
                policy_name=policy_name,
                policy_type="custom_cel",
                shadow=False,
                status=429,
                code="policy_penalty",
                message=(
                    f"requests are refused for {wait}s after a violation of post-check"
                    f" policy '{policy_name}'"
                ),
                details={
                    "policy_id": policy_id,
                    "policy_name": policy_name,
                    "retry_after_seconds": wait,
                },
            )
        )

    async def settle(
        self,
        charges: Sequence[Charge],
        usage: Usage | None,
        deployment: ModelDeployment | None,
        *,
        estimated_prompt: int,
    ) -> None:
        """Correct each reservation to what the request really cost. Without reported
        usage (cut short, upstream error) the fair charge is the estimated prompt."""
        if not charges:
            return
        actual_usage = usage or Usage(prompt_tokens=estimated_prompt, total_tokens=estimated_prompt)
        adjustments = []
        for c in charges:
            probe = TokenLimitPolicy.actual_for(c.count, actual_usage, deployment)
            if probe != c.amount:
                adjustments.append(Adjustment(c.key, c.window, c.bucket_start, probe - c.amount))
        # One call per hash tag: an account's counters live in another Redis Cluster slot
        # than the organisation's.
        for group in _by_hash_tag(adjustments).values():
            try:
                await self._counters.adjust(group, self._clock())
            except CounterStoreUnavailable as exc:
                self._store_errors("settle")
                log.warning("could not settle %d token reservations: %s", len(group), exc)

    async def charge_answering_account(
        self,
        account_name: str,
        usage: Usage | None,
        deployment: ModelDeployment | None,
        *,
        estimated_prompt: int,
    ) -> None:
        """Adds a request to the quota counters of the account that answered it, for a
        model that reserved nothing on them (a fallback group's): the account's own
        models then see the group's load. Nothing was checked before the request, so
        the group's traffic itself is never refused by these quotas."""
        account = self._accounts.get(account_name)
        if account is None:
            return
        actual = usage or Usage(prompt_tokens=estimated_prompt, total_tokens=estimated_prompt)
        now = self._clock()
        adjustments = answered_adjustments(account, actual, deployment, now)
        if not adjustments:
            return
        try:
            await self._counters.adjust(adjustments, now)
        except CounterStoreUnavailable as exc:
            self._store_errors("settle")
            log.warning("could not charge account %s's quotas: %s", account_name, exc)

    async def post_check(
        self, engine: PolicyEngine, identity: Identity, ctx: PostRequestContext
    ) -> tuple[Violation, ...]:
        violations = engine.post_check(identity, ctx)
        penalising = [
            (int(v.details.get("penalty_seconds", 0)), v)
            for v in violations
            if not v.shadow and int(v.details.get("penalty_seconds", 0)) > 0
        ]
        if penalising:
            seconds, worst = max(penalising, key=lambda sv: sv[0])
            key = penalty_key(identity.org_id, identity.app_id, identity.environment)
            now = self._clock()
            penalty = Penalty(now + seconds, worst.policy_id, worst.policy_name)
            try:
                await self._penalties.impose(key, penalty, now)
            except CounterStoreUnavailable as exc:
                self._store_errors("penalty")
                log.warning("could not set a post-check penalty: %s", exc)
        return violations


def _by_hash_tag(adjustments: Sequence[Adjustment]) -> dict[str, list[Adjustment]]:
    groups: dict[str, list[Adjustment]] = {}
    for a in adjustments:
        start = a.key.find("{")
        end = a.key.find("}", start + 1)
        tag = a.key[start + 1 : end] if start >= 0 and end > start + 1 else a.key
        groups.setdefault(tag, []).append(a)
    return groups


def _tightest(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, str]:
    """Per header family (requests, tokens), the headers of the lower remaining count."""
    out = dict(first)
    for unit in ("requests", "tokens"):
        remaining = f"x-ratelimit-remaining-{unit}"
        if remaining in second and (
            remaining not in out or int(second[remaining]) < int(out[remaining])
        ):
            for name in ("limit", "remaining", "reset"):
                out[f"x-ratelimit-{name}-{unit}"] = second[f"x-ratelimit-{name}-{unit}"]
    return out
