"""Which policies apply to a caller, in what order, and what they decide."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy.cel import DEFAULT_ENGINE, EngineName
from policy_sidecar.policy.cel_policy import CelPolicy
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.decision import ALLOW, Decision, Violation
from policy_sidecar.policy.definition import PolicyDefinition
from policy_sidecar.policy.limits import CounterPolicy
from policy_sidecar.policy.local import LocalPolicy, RequestSizePolicy, build_policy

# Entries of `PolicyEngine._by_model` kept before it is emptied at once.
_MAX_BY_MODEL = 4096


@dataclass(frozen=True, slots=True)
class CallerPolicies:
    """The policies that apply to one (org, app, environment), in evaluation order."""

    local: tuple[LocalPolicy, ...]
    counters: tuple[CounterPolicy, ...]
    post: tuple[CelPolicy, ...]
    # Whether a post-check can impose a penalty (`has_penalties`), decided once.
    penalties: bool = False


class PolicyEngine:
    """Evaluates an immutable set of policies. Cheap to query; safe to share.

    Order: enabled policies by (priority, id); local checks (size, allowlist, CEL)
    before counters, so a request a local check refuses never touches a counter.
    """

    def __init__(
        self, definitions: Iterable[PolicyDefinition], *, cel_engine: EngineName = DEFAULT_ENGINE
    ) -> None:
        enabled = sorted((d for d in definitions if d.enabled), key=lambda d: (d.priority, d.id))
        self.definitions = tuple(enabled)
        self._policies = tuple(build_policy(d, cel_engine=cel_engine) for d in enabled)
        self._by_caller: dict[tuple[str, str, str], CallerPolicies] = {}
        # Per caller and model: the local checks and the counters whose scope covers the
        # model (`fnmatchcase` per policy and request otherwise). Bounded: the model is
        # the client's string.
        self._by_model: dict[
            tuple[str, str, str, str | None],
            tuple[tuple[LocalPolicy, ...], tuple[CounterPolicy, ...]],
        ] = {}

    def for_caller(self, identity: Identity) -> CallerPolicies:
        key = (identity.org_id, identity.app_id, identity.environment)
        found = self._by_caller.get(key)
        if found is None:
            mine = [
                p
                for p in self._policies
                if p.definition.scope.matches_caller(
                    org_id=identity.org_id, app_id=identity.app_id, environment=identity.environment
                )
            ]
            post = tuple(p for p in mine if isinstance(p, CelPolicy) and p.has_post_check)
            found = CallerPolicies(
                local=tuple(p for p in mine if not isinstance(p, CounterPolicy)),
                counters=tuple(p for p in mine if isinstance(p, CounterPolicy)),
                post=post,
                penalties=any(p.config.penalty_seconds for p in post),
            )
            self._by_caller[key] = found
        return found

    def _for_model(
        self, identity: Identity, model: str | None
    ) -> tuple[tuple[LocalPolicy, ...], tuple[CounterPolicy, ...]]:
        key = (identity.org_id, identity.app_id, identity.environment, model)
        found = self._by_model.get(key)
        if found is None:
            caller = self.for_caller(identity)
            found = (
                tuple(p for p in caller.local if p.definition.scope.matches_model(model)),
                tuple(p for p in caller.counters if p.definition.scope.matches_model(model)),
            )
            if len(self._by_model) >= _MAX_BY_MODEL:
                self._by_model.clear()
            self._by_model[key] = found
        return found

    def check_declared_size(self, identity: Identity, size: int) -> Decision:
        """Request-size policies against a declared content-length, before buffering."""
        return _decide(
            p.check_size(size)
            for p in self.for_caller(identity).local
            if isinstance(p, RequestSizePolicy)
        )

    def pre_check(self, identity: Identity, ctx: PreRequestContext) -> Decision:
        """The local checks: size, allowlist, CEL pre-checks."""
        return _decide(p.pre_check(ctx) for p in self._for_model(identity, ctx.model)[0])

    def counters(self, identity: Identity, model: str) -> tuple[CounterPolicy, ...]:
        return self._for_model(identity, model)[1]

    def post_check(self, identity: Identity, ctx: PostRequestContext) -> tuple[Violation, ...]:
        """Every post-check that failed, shadow ones included; they never change the
        response (it has been sent), they are recorded and may set a penalty."""
        return tuple(
            v
            for p in self.for_caller(identity).post
            if p.definition.scope.matches_model(ctx.pre.model)
            for v in (p.post_check(ctx),)
            if v is not None
        )

    def covers(self, identity: Identity, model: str | None = None) -> tuple[str, ...]:
        """The ids of the policies whose scope covers this caller (and ``model``, when
        given), in evaluation order: the dry runs explain a policy that does not apply."""
        caller = self.for_caller(identity)
        policies: tuple[LocalPolicy | CounterPolicy, ...] = (*caller.local, *caller.counters)
        return tuple(
            p.definition.id
            for p in policies
            if model is None or p.definition.scope.matches_model(model)
        )

    def has_penalties(self, identity: Identity) -> bool:
        return self.for_caller(identity).penalties


def _decide(violations: Iterable[Violation | None]) -> Decision:
    """The first enforce-mode violation denies; evaluation stops there (lazy iterable)."""
    shadow: list[Violation] = []
    for violation in violations:
        if violation is None:
            continue
        if violation.shadow:
            shadow.append(violation)
        else:
            return Decision(denial=violation, shadow=tuple(shadow))
    return Decision(shadow=tuple(shadow)) if shadow else ALLOW


def merge(first: Decision, second: Decision) -> Decision:
    """Two phases' decisions as one: the first denial wins, shadows accumulate."""
    return Decision(denial=first.denial or second.denial, shadow=first.shadow + second.shadow)
