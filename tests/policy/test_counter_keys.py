"""Which callers share one counter, for every `key` scope of a rate or token limit.

Each scope is checked both ways: the callers it must keep together land on one counter
key, and the callers it must keep apart land on different ones. (A scope that counts
too coarsely lets one app spend another's limit; too finely, it multiplies the limit.)
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy.definition import PolicyDefinition, RateLimitConfig, TokenLimitConfig
from policy_sidecar.policy.limits import CounterPolicy, RateLimitPolicy, TokenLimitPolicy

BASE = Identity(app_id="app-1", org_id="org-1", environment="prod", key_id="key-1")
MODEL = "gpt-4o-mini"

# One change of caller (or model) at a time, away from BASE and MODEL.
CHANGES: dict[str, tuple[Identity, str]] = {
    "other org": (replace(BASE, org_id="org-2"), MODEL),
    "other app": (replace(BASE, app_id="app-2"), MODEL),
    "other environment": (replace(BASE, environment="dev"), MODEL),
    "other key": (replace(BASE, key_id="key-2"), MODEL),
    "other model": (BASE, "claude-3-5-haiku"),
}

# For each scope: the changes that must move the request to another counter; every
# other change must keep it on the same counter.
SPLIT_BY: dict[str, set[str]] = {
    "org": {"other org"},
    "app": {"other org", "other app"},
    "app_env": {"other org", "other app", "other environment"},
    "api_key": {"other org", "other key"},
    "app_model": {"other org", "other app", "other model"},
}


def test_every_scope_is_covered() -> None:
    scopes = RateLimitConfig.model_fields["key"].annotation.__args__  # type: ignore[union-attr]
    assert set(SPLIT_BY) == set(scopes)


def _policies(scope: str) -> list[CounterPolicy]:
    rate = RateLimitConfig.model_validate({"requests": 5, "window": "1m", "key": scope})
    tokens = TokenLimitConfig.model_validate({"limit": 500, "window": "1h", "key": scope})
    return [
        RateLimitPolicy(PolicyDefinition("rl", "rl", "rate_limit", rate), rate),
        TokenLimitPolicy(PolicyDefinition("tl", "tl", "token_limit", tokens), tokens),
    ]


@pytest.mark.parametrize("scope", sorted(SPLIT_BY))
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_scope_decides_which_callers_share_a_counter(scope: str, change: str) -> None:
    for policy in _policies(scope):
        base_key = policy.key(BASE, MODEL)
        identity, model = CHANGES[change]
        other_key = policy.key(identity, model)
        if change in SPLIT_BY[scope]:
            assert other_key != base_key, f"{scope}: {change} must count separately"
        else:
            assert other_key == base_key, f"{scope}: {change} must share the counter"


@pytest.mark.parametrize("scope", sorted(SPLIT_BY))
def test_every_key_is_tagged_by_organisation_and_named_by_policy(scope: str) -> None:
    # One Redis Cluster slot per organisation: the script touches all counters at once.
    for policy in _policies(scope):
        key = policy.key(BASE, MODEL)
        assert "{org:org-1}" in key
        assert key.endswith(f":{policy.definition.id}")


def test_two_policies_of_one_scope_never_share_a_counter() -> None:
    rate = RateLimitConfig.model_validate({"requests": 5, "window": "1m", "key": "org"})
    first = RateLimitPolicy(PolicyDefinition("a", "a", "rate_limit", rate), rate)
    second = RateLimitPolicy(PolicyDefinition("b", "b", "rate_limit", rate), rate)
    assert first.key(BASE, MODEL) != second.key(BASE, MODEL)


def test_app_model_scope_without_a_model_has_its_own_counter() -> None:
    (policy, _) = _policies("app_model")
    assert policy.key(BASE, "") != policy.key(BASE, MODEL)
    assert policy.key(BASE, "") == policy.key(replace(BASE, key_id="key-9"), "")


def test_cached_keys_follow_the_caller() -> None:
    # The per-policy cache of built keys must not hand one caller's key to another.
    (policy, _) = _policies("api_key")
    first = policy.key(BASE, MODEL)
    second = policy.key(replace(BASE, key_id="key-2"), MODEL)
    assert policy.key(BASE, MODEL) == first
    assert policy.key(replace(BASE, key_id="key-2"), MODEL) == second != first
