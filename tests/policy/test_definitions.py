"""Each policy type validates its own config once, and says precisely what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from policy_sidecar.counters.values import Window, WindowUnit
from policy_sidecar.policy.definition import CONFIG_TYPES, parse_window


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("30s", Window(WindowUnit.SECOND, 30)),
        ("1m", Window(WindowUnit.MINUTE, 1)),
        ("12h", Window(WindowUnit.HOUR, 12)),
        ("7d", Window(WindowUnit.DAY, 7)),
        ("month", Window(WindowUnit.MONTH)),
        ("1mo", Window(WindowUnit.MONTH)),
    ],
)
def test_windows(text: str, window: Window) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize("text", ["", "0m", "5", "m", "1w", "-1h", "2months"])
def test_bad_windows(text: str) -> None:
    with pytest.raises(ValueError, match="is not a window like"):
        parse_window(text)


@pytest.mark.parametrize(
    ("kind", "config", "parsed"),
    [
        (
            "rate_limit",
            {"requests": 10, "window": "1m"},
            # Unset fields take their documented defaults.
            {"requests": 10, "window": "1m", "key": "app_env", "fail_mode": "open"},
        ),
        (
            "rate_limit",
            {"requests": 10, "window": "month", "key": "org", "fail_mode": "closed"},
            {"requests": 10, "window": "month", "key": "org", "fail_mode": "closed"},
        ),
        (
            "token_limit",
            {"limit": 1000, "window": "1h", "count": "prompt", "key": "api_key"},
            {
                "limit": 1000,
                "limit_usd": None,
                "window": "1h",
                "count": "prompt",
                "key": "api_key",
                "fail_mode": "open",
                "output_reserve_ratio": 0.5,
                "output_reserve_cap": 4096,
                "default_max_output": 256,
            },
        ),
        (
            "token_limit",
            {"limit_usd": 12.5, "window": "month", "count": "cost_usd"},
            {"limit": None, "limit_usd": 12.5, "count": "cost_usd", "key": "app_env"},
        ),
        (
            "custom_cel",
            {"pre_check_expression": "estimated_tokens < 4000 && request_size_bytes < 100000"},
            {
                "pre_check_expression": "estimated_tokens < 4000 && request_size_bytes < 100000",
                "post_check_expression": None,
                "penalty_seconds": None,
                "message": None,
            },
        ),
        (
            "custom_cel",
            {"post_check_expression": "total_tokens < 8000", "penalty_seconds": 30},
            {
                "pre_check_expression": None,
                "post_check_expression": "total_tokens < 8000",
                "penalty_seconds": 30,
            },
        ),
        # A list of models becomes an immutable tuple, in order.
        ("model_allowlist", {"models": ["gpt-4o*"]}, {"models": ("gpt-4o*",)}),
        ("request_size", {"max_bytes": 1}, {"max_bytes": 1}),
    ],
)
def test_valid_configs(kind: str, config: dict[str, Any], parsed: dict[str, Any]) -> None:
    model = CONFIG_TYPES[kind].model_validate(config)
    assert {name: getattr(model, name) for name in parsed} == parsed


def test_parsed_window_of_a_counter_config() -> None:
    config = CONFIG_TYPES["rate_limit"].model_validate({"requests": 1, "window": " 5M "})
    assert config.parsed_window == Window(WindowUnit.MINUTE, 5)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "config", "fragment"),
    [
        ("rate_limit", {"requests": 0, "window": "1m"}, "requests"),
        ("rate_limit", {"requests": 5, "window": "1 week"}, "is not a window like"),
        ("rate_limit", {"requests": 5, "window": "1m", "key": "user"}, "key"),
        ("rate_limit", {"requests": "5", "window": "1m"}, "requests"),
        ("rate_limit", {"requests": 5, "window": "1m", "burst": 2}, "Extra inputs"),
        ("token_limit", {"window": "1h"}, "takes 'limit' (tokens)"),
        ("token_limit", {"limit": 5, "window": "1h", "count": "cost_usd"}, "takes 'limit_usd'"),
        (
            "token_limit",
            {"limit": 5, "window": "1h", "output_reserve_ratio": 2},
            "output_reserve_ratio",
        ),
        ("custom_cel", {}, "give pre_check_expression, post_check_expression or both"),
        (
            "custom_cel",
            {"pre_check_expression": "estimated_tokens <"},
            "pre_check_expression: 1:19",
        ),
        ("custom_cel", {"pre_check_expression": "model > 3"}, "no matching overload"),
        ("custom_cel", {"pre_check_expression": "total_tokens < 5"}, "total_tokens"),
        ("custom_cel", {"post_check_expression": "total_tokens + 1"}, "bool"),
        (
            "custom_cel",
            {"pre_check_expression": "true", "penalty_seconds": 5},
            "needs a post_check",
        ),
    ],
)
def test_invalid_configs_name_the_problem(kind: str, config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        CONFIG_TYPES[kind].model_validate(config)
    assert fragment in str(info.value)
