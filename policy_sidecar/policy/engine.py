"""Which policies apply to a caller, in what order, and what they decide."""

from __future__ import annotations

from collections.abc import Iterable

from policy_sidecar.identity import Identity
from policy_sidecar.policy.context import PreRequestContext
from policy_sidecar.policy.decision import ALLOW, Decision, Violation
from policy_sidecar.policy.definition import PolicyDefinition
from policy_sidecar.policy.types import LocalPolicy, RequestSizePolicy, build_local_policy


class PolicyEngine:
    """Evaluates an immutable set of policies. Cheap to query; safe to share."""

    def __init__(self, definitions: Iterable[PolicyDefinition]) -> None:
        enabled = sorted((d for d in definitions if d.enabled), key=lambda d: (d.priority, d.id))
        self._policies = tuple(build_local_policy(d) for d in enabled)
        self._by_caller: dict[tuple[str, str, str], tuple[LocalPolicy, ...]] = {}

    def for_caller(self, identity: Identity) -> tuple[LocalPolicy, ...]:
        key = (identity.org_id, identity.app_id, identity.environment)
        found = self._by_caller.get(key)
        if found is None:
            found = tuple(
                p
                for p in self._policies
                if p.definition.scope.matches_caller(
                    org_id=identity.org_id, app_id=identity.app_id, environment=identity.environment
                )
            )
            self._by_caller[key] = found
        return found

    def check_declared_size(self, identity: Identity, size: int) -> Decision:
        """Request-size policies against a declared content-length, before buffering."""
        return _decide(
            p.check_size(size)
            for p in self.for_caller(identity)
            if isinstance(p, RequestSizePolicy)
        )

    def pre_check(self, identity: Identity, ctx: PreRequestContext) -> Decision:
        policies = [
            p for p in self.for_caller(identity) if p.definition.scope.matches_model(ctx.model)
        ]
        return _decide(p.pre_check(ctx) for p in policies)


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
