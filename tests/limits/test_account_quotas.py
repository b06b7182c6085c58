"""A provider account's quotas: one counter shared by every org on the account, checked
before the request leaves, in a second call whose keys share the account's hash tag."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import (
    Adjustment,
    CheckResult,
    CounterOp,
    CounterStoreUnavailable,
    Reservation,
)
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy import PolicyEngine
from policy_sidecar.policy.account_limits import account_key
from policy_sidecar.providers import Usage
from tests.conftest import FakeClock
from tests.redis_cluster import LocalRedisCluster

from .test_enforcer import REDIS_URL, ctx, rate_policy, token_policy


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        # The real thing: a Redis Cluster answers a call across slots with an error,
        # and the account's counters live in another slot than the orgs'.
        pytest.param("cluster", marks=pytest.mark.redis_cluster),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield InMemoryCounterStore()
        return
    url = REDIS_URL
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        url = cluster.url
    redis_store = RedisCounterStore.from_url(url, socket_timeout=5.0, connect_timeout=5.0)
    yield redis_store
    await redis_store.aclose()


_TAG = re.compile(r"\{([^}]*)\}")


class OneSlotPerCall:
    """Wraps a store and fails a call whose keys carry more than one hash tag: what
    Redis Cluster answers with CROSSSLOT."""

    answers_at_once = False  # wraps a store that may suspend

    def __init__(self, inner: CounterStore) -> None:
        self.inner = inner
        self.calls: list[set[str]] = []

    def _check(self, keys: Sequence[str]) -> None:
        tags = {_TAG.search(k).group(1) for k in keys}  # type: ignore[union-attr]
        assert len(tags) == 1, f"one call across slots: {sorted(tags)}"
        self.calls.append(tags)

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        self._check([o.key for o in ops])
        return await self.inner.check_and_add(ops, now)

    async def adjust(self, adjustments: Sequence[Adjustment], now: float) -> None:
        self._check([a.key for a in adjustments])
        await self.inner.adjust(adjustments, now)

    async def settle(self, reservation: Reservation, actual: Mapping[str, int], now: float) -> None:
        await self.inner.settle(reservation, actual, now)

    async def release(self, reservation: Reservation, now: float) -> None:
        self._check([e.key for e in reservation.entries])
        await self.inner.release(reservation, now)

    async def aclose(self) -> None:
        await self.inner.aclose()


def setup(
    store: CounterStore, **quotas: int
) -> tuple[Enforcer, OneSlotPerCall, ModelDeployment, str]:
    name = f"acc-{uuid.uuid4().hex[:8]}"
    account = ProviderAccount(
        name=name,
        provider="openai",
        base_host="api.openai.com",
        credential_ref="k",
        **quotas,  # type: ignore[arg-type]
    )
    wrapped = OneSlotPerCall(store)
    enforcer = Enforcer(wrapped, InMemoryPenaltyBox(), FakeClock(), accounts={name: account})
    deployment = ModelDeployment(
        name="gpt-4o-mini",
        provider="openai",
        upstream_model="gpt-4o-mini",
        route=name,
        account=name,
    )
    return enforcer, wrapped, deployment, name


def org(name: str) -> Identity:
    return Identity(
        app_id="a", org_id=f"{name}-{uuid.uuid4().hex[:8]}", environment="dev", key_id="k"
    )


async def test_the_account_rpm_is_shared_across_orgs(store: CounterStore) -> None:
    enforcer, _, deployment, name = setup(store, requests_per_minute=3)
    engine = PolicyEngine([])
    acme, globex = org("acme"), org("globex")
    decisions = [
        await enforcer.admit(engine, who, ctx(who, 10, 10), deployment)
        for who in (acme, globex, acme, globex)
    ]
    assert [d.decision.allowed for d in decisions] == [True, True, True, False]
    denial = decisions[-1].decision.denial
    assert denial is not None
    assert (denial.status, denial.policy_id) == (429, f"account:{name}:requests_per_minute")
    assert f"provider account '{name}'" in denial.message
    assert denial.details["retry_after_seconds"] >= 1
    assert decisions[0].headers["x-ratelimit-limit-requests"] == "3"
    # A model on no account is not counted against it.
    other = ModelDeployment(name="m", provider="openai", upstream_model="m")
    assert (await enforcer.admit(engine, acme, ctx(acme, 1, 1), other)).decision.allowed


async def test_an_account_denial_gives_back_the_apps_counters(store: CounterStore) -> None:
    enforcer, wrapped, deployment, _ = setup(store, requests_per_minute=1)
    engine = PolicyEngine([rate_policy(2)])
    who = org("acme")
    assert (await enforcer.admit(engine, who, ctx(who, 1, 1), deployment)).decision.allowed
    refused = await enforcer.admit(engine, who, ctx(who, 1, 1), deployment)
    assert refused.decision.denial is not None
    assert refused.decision.denial.policy_id.startswith("account:")
    # The app's limit (2) still has room for exactly one more: the refusal took nothing.
    other = ModelDeployment(name="m", provider="openai", upstream_model="m")
    assert (await enforcer.admit(engine, who, ctx(who, 1, 1), other)).decision.allowed
    assert not (await enforcer.admit(engine, who, ctx(who, 1, 1), other)).decision.allowed
    # Every call stayed within one hash tag (Redis Cluster): the org's or the account's.
    assert all(len(tags) == 1 for tags in wrapped.calls)


async def test_the_account_tpm_is_reserved_and_settled(store: CounterStore) -> None:
    enforcer, wrapped, deployment, name = setup(store, tokens_per_minute=1_000)
    engine = PolicyEngine([token_policy(100_000)])
    who = org("acme")
    first = await enforcer.admit(engine, who, ctx(who, 300, 400), deployment)  # 300 + 200
    assert first.decision.allowed
    assert {c.key for c in first.charges} >= {account_key(name, "tokens")}
    assert first.headers["x-ratelimit-remaining-tokens"] == "500"  # the tighter: the account's
    await enforcer.settle(first.charges, Usage(300, 50, 350), deployment, estimated_prompt=300)
    tags = set().union(*wrapped.calls[-2:])
    assert len(tags) == 2  # settled in two calls: the org's slot and the account's
    # 350 settled + 600 fits 1,000; had the 500 reserved stayed, it would not.
    second = await enforcer.admit(engine, who, ctx(who, 400, 400), deployment)
    assert second.decision.allowed
    third = await enforcer.admit(engine, org("globex"), ctx(who, 100, 0), deployment)
    assert third.decision.denial is not None
    assert third.decision.denial.policy_id == f"account:{name}:tokens_per_minute"


class AccountSlotDown(OneSlotPerCall):
    """The account's slot is unreachable (its Redis Cluster node is down); the org's is up."""

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        if any("{account:" in o.key for o in ops):
            raise CounterStoreUnavailable("account slot down")
        return await super().check_and_add(ops, now)


async def test_an_unreachable_account_slot_fails_open_and_keeps_the_apps_charges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    enforcer, _, deployment, _ = setup(InMemoryCounterStore(), tokens_per_minute=1_000)
    enforcer._counters = AccountSlotDown(InMemoryCounterStore())
    engine = PolicyEngine([token_policy(100_000)])
    who = org("acme")
    admission = await enforcer.admit(engine, who, ctx(who, 300, 400), deployment)
    assert admission.decision.allowed
    assert admission.counters_unavailable is True
    assert enforcer.unavailable_events == 1
    assert [c.key.rsplit(":", 1)[-1] for c in admission.charges] == ["tok"]  # the app's
    assert "counter store unavailable for account quotas; failing open: account slot down" in (
        caplog.text
    )


async def test_account_and_app_charges_and_headers_together(store: CounterStore) -> None:
    enforcer, _, deployment, name = setup(store, tokens_per_minute=1_000)
    engine = PolicyEngine([token_policy(100_000)])
    who = org("acme")
    first = await enforcer.admit(engine, who, ctx(who, 300, 400), deployment)  # 500
    # both reservations, to be settled: the app's and the account's
    assert sorted(c.key for c in first.charges)[0] == account_key(name, "tokens")
    assert len(first.charges) == 2
    refused = await enforcer.admit(engine, who, ctx(who, 600, 400), deployment)  # 800
    assert refused.decision.denial is not None
    assert refused.charges == ()
    assert refused.headers["x-ratelimit-limit-tokens"] == "1000"  # the tighter: the account's


async def test_a_fallback_groups_request_is_charged_to_the_account_that_answered(
    store: CounterStore,
) -> None:
    """A model on a group reserves no account quota (the answering account is known only
    at the end); afterwards the request and its tokens land on that account's counters,
    which the account's own models are then checked against."""
    enforcer, wrapped, deployment, name = setup(
        store, requests_per_minute=3, tokens_per_minute=1_000
    )
    grouped = ModelDeployment(
        name="gpt-4o-mini", provider="openai", upstream_model="gpt-4o-mini", route="any"
    )
    engine = PolicyEngine([])
    who = org("acme")
    admitted = await enforcer.admit(engine, who, ctx(who, 300, 400), grouped)
    assert admitted.decision.allowed and admitted.charges == ()
    await enforcer.charge_answering_account(
        name, Usage(300, 400, 700), grouped, estimated_prompt=300
    )
    assert wrapped.calls[-1] == {f"account:{name}"}  # one call, in the account's slot
    # 700 of 1,000 tokens and 1 of 3 requests are used: 350 more tokens do not fit.
    refused = await enforcer.admit(engine, who, ctx(who, 250, 200), deployment)
    assert refused.decision.denial is not None
    assert refused.decision.denial.policy_id == f"account:{name}:tokens_per_minute"
    assert (await enforcer.admit(engine, who, ctx(who, 100, 100), deployment)).decision.allowed
    # Two requests counted (the group's and the last one): one more fits, then none.
    assert (await enforcer.admit(engine, who, ctx(who, 1, 0), deployment)).decision.allowed
    rpm = await enforcer.admit(engine, who, ctx(who, 1, 0), deployment)
    assert rpm.decision.denial is not None
    assert rpm.decision.denial.policy_id == f"account:{name}:requests_per_minute"
    # An unknown account, or one without quotas, is left alone.
    calls = len(wrapped.calls)
    await enforcer.charge_answering_account("ghost", Usage(1, 1, 2), grouped, estimated_prompt=1)
    assert len(wrapped.calls) == calls
