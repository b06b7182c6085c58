"""Deny responses in each provider's own error shape, with the policy details inside."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy_sidecar.providers import default_registry

REGISTRY = default_registry()
DETAILS = {"policy_id": "pol_1", "policy_name": "daily tokens", "limit": 1000, "reset_at": "x"}


def body(provider: str, status: int = 429) -> dict[str, Any]:
    raw = REGISTRY.get(provider).error_body(
        message="Token limit exceeded",
        error_type="rate_limit_error",
        code="token_limit_exceeded",
        status=status,
        details=DETAILS,
    )
    data: dict[str, Any] = json.loads(raw)
    return data


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_openai_shape(provider: str) -> None:
    assert body(provider) == {
        "error": {
            "message": "Token limit exceeded",
            "type": "rate_limit_error",
            "param": None,
            "code": "token_limit_exceeded",
            "details": DETAILS,
        }
    }


def test_anthropic_shape() -> None:
    assert body("anthropic") == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Token limit exceeded",
            "details": DETAILS,
        },
    }


def test_cohere_shape() -> None:
    assert body("cohere") == {"message": "Token limit exceeded", "details": DETAILS}


@pytest.mark.parametrize(
    ("status", "google_status"),
    [(429, "RESOURCE_EXHAUSTED"), (403, "PERMISSION_DENIED"), (413, "INVALID_ARGUMENT")],
)
def test_gemini_shape(status: int, google_status: str) -> None:
    error = body("gemini", status)["error"]
    assert error["code"] == status
    assert error["status"] == google_status
    assert error["message"] == "Token limit exceeded"
    (info,) = error["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "token_limit_exceeded"
    assert info["metadata"] == {**DETAILS, "limit": "1000"}
