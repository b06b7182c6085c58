"""The session's log check (tests/log_secrets.py) finds what it is meant to find."""

from __future__ import annotations

import types
from pathlib import Path

from tests.log_secrets import find_leaks, module_secrets


def test_secrets_are_collected_by_the_constant_names_the_e2e_modules_use() -> None:
    module = types.ModuleType("fake_e2e")
    module.KEY = "ps-e2e-key-0123456789abcdef"  # type: ignore[attr-defined]
    module.KEYS = {"a": "ps-a-key-0123456789"}  # type: ignore[attr-defined]
    module.ADMIN_TOKEN = "admin-token-0123456789"  # type: ignore[attr-defined]
    module.MESSAGES = [{"role": "user", "content": "Write a haiku."}]  # type: ignore[attr-defined]
    module.MODELS = ["gpt-4o-mini-2024"]  # type: ignore[attr-defined]  # not a secret
    module.CACHED_TOKENS_HEADER = "x-fake-cached-tokens"  # type: ignore[attr-defined]
    module.short_key = "not-a-constant-name"  # type: ignore[attr-defined]
    assert module_secrets(module) == {
        "ps-e2e-key-0123456789abcdef",
        "ps-a-key-0123456789",
        "admin-token-0123456789",
        "Write a haiku.",
    }


def test_a_leak_is_reported_with_its_line_and_without_the_secret() -> None:
    secret = "ps-e2e-key-0123456789abcdef"
    texts = {
        Path("sidecar.log"): '{"message": "ok"}\n{"message": "key ' + secret + '"}\n',
        Path("admin.log"): '{"message": "listening"}\n',
    }
    [leak] = find_leaks(texts, [secret, "never-logged-secret"])
    assert leak == "sidecar.log:2: leaks ps-e…(27 chars)"
    assert secret not in leak
