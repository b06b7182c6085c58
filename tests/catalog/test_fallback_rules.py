"""The one rule set for fallback groups (render-envoy's accounts file and the admin API)."""

from __future__ import annotations

import pytest

from policy_sidecar.catalog.account_rules import fallback_group_problems
from policy_sidecar.catalog.accounts import ProviderAccount


def _account(name: str, provider: str = "openai", *, enabled: bool = True) -> ProviderAccount:
    return ProviderAccount(
        name=name,
        provider=provider,  # type: ignore[arg-type]
        base_host="api.example.com",
        credential_ref=name,
        enabled=enabled,
    )


ACCOUNTS = {
    a.name: a
    for a in (
        _account("prod"),
        _account("spare"),
        _account("off", enabled=False),
        _account("claude", "anthropic"),
    )
}


def test_a_good_group_has_no_problem() -> None:
    assert fallback_group_problems("any", ["prod", "spare"], ACCOUNTS) == []
    assert fallback_group_problems("any", ["spare", "prod"], ACCOUNTS) == []


@pytest.mark.parametrize(
    ("name", "members", "expected"),
    [
        ("Any_", ["prod", "spare"], [("name", "must match")]),
        ("prod", ["prod", "spare"], [("name", "'prod' is an account's name")]),
        ("any", ["prod"], [("accounts", "two or more distinct accounts")]),
        ("any", [], [("accounts", "two or more distinct accounts")]),
        ("any", ["prod", "prod"], [("accounts", "two or more distinct accounts")]),
        ("any", ["prod", "ghost"], [("accounts", "no enabled account 'ghost' (unknown")]),
        ("any", ["prod", "off"], [("accounts", "no enabled account 'off' (it is disabled)")]),
        ("any", ["prod", "claude"], [("accounts", "of one provider, not openai, anthropic")]),
        (
            "spare",
            ["ghost"],
            [
                ("name", "'spare' is an account's name"),
                ("accounts", "two or more distinct"),
                ("accounts", "'ghost' (unknown"),
            ],
        ),
    ],
)
def test_each_broken_rule_names_its_field(
    name: str, members: list[str], expected: list[tuple[str, str]]
) -> None:
    problems = fallback_group_problems(name, members, ACCOUNTS)
    assert [f for f, _ in problems] == [f for f, _ in expected], problems
    for (_, problem), (_, part) in zip(problems, expected, strict=True):
        assert part in problem
