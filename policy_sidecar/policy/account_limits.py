"""A provider account's own quotas (the provider's RPM/TPM) as counter policies.

One counter per account and unit, shared by every organisation and application whose
models use the account: the gateway sheds load before the provider answers 429. The
keys carry the account as their Redis Cluster hash tag (``{account:<name>}``), so they
never share a slot with an organisation's counters: the enforcer checks them in a
second, separate call (see limits/enforcer.py). Pure.
"""

from __future__ import annotations

from functools import lru_cache

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.counters.values import Adjustment, counter_key
from policy_sidecar.counters.windows import bucket_bounds
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy.definition import PolicyDefinition, RateLimitConfig, TokenLimitConfig
from policy_sidecar.policy.limits import CounterPolicy, RateLimitPolicy, TokenLimitPolicy
from policy_sidecar.providers.base import Usage

__all__ = ["account_key", "account_policies", "answered_adjustments"]


def account_key(account: str, unit: str) -> str:
    return counter_key("account", account, unit)


class _AccountRate(RateLimitPolicy):
    def __init__(self, definition: PolicyDefinition, config: RateLimitConfig, key: str) -> None:
        super().__init__(definition, config)
        self._account_key = key

    def key(self, identity: Identity, model: str) -> str:
        return self._account_key


class _AccountTokens(TokenLimitPolicy):
    def __init__(self, definition: PolicyDefinition, config: TokenLimitConfig, key: str) -> None:
        super().__init__(definition, config)
        self._account_key = key

    def key(self, identity: Identity, model: str) -> str:
        return self._account_key


@lru_cache(maxsize=1024)
def account_policies(account: ProviderAccount) -> tuple[CounterPolicy, ...]:
    """The account's quota counters (none when it declares no quota). Cached per account
    value: an edited account is a new value, hence new policies."""
    out: list[CounterPolicy] = []
    if account.requests_per_minute:
        rate = RateLimitConfig(requests=account.requests_per_minute, window="1m")
        out.append(
            _AccountRate(
                _definition(account, "requests_per_minute", "rate_limit", rate),
                rate,
                account_key(account.name, "requests"),
            )
        )
    if account.tokens_per_minute:
        tokens = TokenLimitConfig(limit=account.tokens_per_minute, window="1m")
        out.append(
            _AccountTokens(
                _definition(account, "tokens_per_minute", "token_limit", tokens),
                tokens,
                account_key(account.name, "tokens"),
            )
        )
    return tuple(out)


def _definition(
    account: ProviderAccount, quota: str, type_: str, config: RateLimitConfig | TokenLimitConfig
) -> PolicyDefinition:
    return PolicyDefinition(
        id=f"account:{account.name}:{quota}",
        name=f"provider account '{account.name}' {quota.replace('_', ' ')}",
        type=type_,
        config=config,
    )


def answered_adjustments(
    account: ProviderAccount, usage: Usage, deployment: ModelDeployment | None, now: float
) -> list[Adjustment]:
    """What a request the account answered adds to its quota counters when nothing was
    reserved on them before (a model on a fallback group: which account answers is
    known only at the end): one request, and the tokens it used, in the current bucket."""
    out = []
    for policy in account_policies(account):
        if isinstance(policy, TokenLimitPolicy):
            amount = TokenLimitPolicy.actual_for(policy.config.count, usage, deployment)
        else:
            amount = 1
        start, _ = bucket_bounds(policy.window, now)
        out.append(Adjustment(account_key(account.name, policy.unit), policy.window, start, amount))
    return out
