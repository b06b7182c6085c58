"""Every setting flows through `wiring.settings`: one reader of the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import policy_sidecar
from policy_sidecar.wiring.settings import PREFIX, SettingsError, child_environment

PACKAGE = Path(policy_sidecar.__file__).parent
# The one reader, and the one write (prometheus_client reads only the environment).
ALLOWED = {"wiring/settings.py", "cli/main.py"}


def _environ_users() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            named = (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ("environ", "getenv") for a in node.names)
            )
            if named:
                found.add(path.relative_to(PACKAGE).as_posix())
    return found


def test_only_the_settings_module_reads_the_environment() -> None:
    assert _environ_users() <= ALLOWED


def test_a_child_gets_this_environment_with_the_given_settings_on_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/somewhere")
    monkeypatch.setenv(PREFIX + "LOG_LEVEL", "INFO")
    env = child_environment({PREFIX + "LOG_LEVEL": "DEBUG"})
    assert env["PATH"] == "/somewhere"
    assert env[PREFIX + "LOG_LEVEL"] == "DEBUG"


def test_a_child_setting_must_be_a_setting() -> None:
    with pytest.raises(SettingsError, match="NOT_A_SETTING"):
        child_environment({"NOT_A_SETTING": "1"})
