"""No secret in the logs: every log file the end-to-end tests' subprocesses (sidecar,
admin service, Envoy) wrote under the session's temp directory is searched for every
API key, admin token and prompt text those tests used.

Secrets come from two places: constants of the e2e test modules whose names say what
they are (`KEY`, `KEYS`, `*_TOKEN`, `ADMIN`, `VIEWER`, `MESSAGES`, `PROMPT`...), and
values only known at run time (keys the admin service generated), which fixtures
hand to `register()`. The check runs when the session ends (tests/conftest.py) and
fails the run, printing what leaked where.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__ = ["check", "find_leaks", "module_secrets", "register"]

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|ADMIN|VIEWER|PASSWORD")
_PROMPT_NAME = re.compile(r"MESSAGES|PROMPT")
# Shorter strings ("hi", "x") would match by accident; the fixtures' secrets are long.
MIN_LENGTH = 8
# Modules whose tests deny requests, so the sidecar's logs must show request ids.
DENYING_MODULES = ("test_openai_e2e.py", "test_limits_e2e.py", "test_metrics_e2e.py")

_registered: set[str] = set()


def register(*values: str) -> None:
    """A secret known only at run time (e.g. a key the admin service generated)."""
    _registered.update(v for v in values if v)


def _strings(value: Any, *, prompts: bool) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if not prompts or key in ("content", "prompt", "text"):
                yield from _strings(item, prompts=prompts)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item, prompts=prompts)


def module_secrets(module: ModuleType) -> set[str]:
    found: set[str] = set()
    for name, value in vars(module).items():
        if not name.isupper() or name.endswith("_HEADER"):
            continue
        if _SECRET_NAME.search(name):
            found.update(_strings(value, prompts=False))
        elif _PROMPT_NAME.search(name):
            found.update(_strings(value, prompts=True))
    return {s for s in found if len(s) >= MIN_LENGTH}


def _logs(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.log") if p.is_file())


def check(session: pytest.Session, base: Path | None) -> tuple[list[str], str]:
    """(problems, summary); no problems: clean. Only when e2e tests ran; the checks
    that the logs were really captured are skipped when tests failed (a failed test
    may have stopped before logging anything)."""
    e2e = [item for item in session.items if item.get_closest_marker("e2e") is not None]
    if not e2e or base is None:
        return [], ""
    modules = {item.module for item in e2e if isinstance(item, pytest.Function)}
    secrets = set(_registered)
    for module in modules:
        secrets |= module_secrets(module)
    logs = _logs(base)
    problems: list[str] = []
    if not secrets:
        problems.append("no secrets collected from the e2e tests: nothing to look for")
    texts = {path: path.read_text(errors="replace") for path in logs}
    strict = not session.testsfailed
    if strict and not any(texts.values()):
        problems.append(f"no log lines in {len(logs)} log files under {base}")
    ran = {Path(str(m.__file__)).name for m in modules}
    if (
        strict
        and any(name in ran for name in DENYING_MODULES)
        and not any('"request_id"' in text for text in texts.values())
    ):
        problems.append("no log line carries a request_id: are the sidecar logs captured?")
    problems += find_leaks(texts, secrets)
    size = sum(len(t) for t in texts.values())
    summary = f"{len(logs)} log files ({size} characters) searched for {len(secrets)} secrets"
    return problems, summary


def find_leaks(texts: Mapping[Path, str], secrets: Iterable[str]) -> list[str]:
    """``path:line: leaks abcd…(N chars)`` for every secret found in a log text."""
    found = []
    for path, text in texts.items():
        for secret in sorted(set(secrets)):
            if secret in text:
                line = next(n for n, row in enumerate(text.splitlines(), 1) if secret in row)
                found.append(f"{path}:{line}: leaks {_masked(secret)}")
    return found


def _masked(secret: str) -> str:
    return f"{secret[:4]}…({len(secret)} chars)"
