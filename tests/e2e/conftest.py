"""The real stack for end-to-end tests: Envoy binary, sidecar workers, fake provider."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from policy_sidecar.cli.launcher import Stack, start_stack

KEY = "ps-e2e-key-0123456789abcdef"

CONFIG = f"""
version: 1
applications:
  - id: e2e-app
    org_id: e2e-org
    keys:
      - environment: dev
        key: {KEY}
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
  - {{name: gpt-4o, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
policies:
  - id: pol-allow
    name: mini only
    type: model_allowlist
    config: {{models: [gpt-4o-mini]}}
  - id: pol-size
    name: 32 KiB bodies
    type: request_size
    config: {{max_bytes: 32768}}
"""


T = TypeVar("T")
# Requests sent at once to reach every sidecar worker: Envoy keeps requests that come one
# at a time on the first worker, and spills to the others once a few are in flight on it
# (docs/envoy.md, "Several worker processes"; test_sidecar_balancing_e2e.py).
BURST = 8


def at_once(send: Callable[[int], T], n: int = BURST) -> list[T]:
    """``send(0)`` … ``send(n - 1)`` concurrently, their results in that order."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(send, range(n)))


def write_config(directory: Path, text: str = CONFIG) -> Path:
    path = directory / "standalone.yaml"
    path.write_text(text)
    return path


def stack_of(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: str = CONFIG
) -> Iterator[Stack]:
    """A module's own stack on its own standalone config, stopped after the module (use
    it as ``yield from stack_of(...)`` in a fixture)."""
    workdir = tmp_path_factory.mktemp(name)
    running = start_stack(workdir, write_config(workdir, config))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    running = start_stack(workdir, write_config(workdir), workers=2)
    try:
        yield running
    finally:
        running.stop()


def usage_records(
    stack: Stack, request_ids: set[str] | None = None, *, count: int = 1, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Polls the usage file until ``count`` matching records are there."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if stack.usage_file.exists():
            text = stack.usage_file.read_text()
            # A line still being appended has no newline yet: read it next time.
            complete = text[: text.rfind("\n") + 1]
            found = [json.loads(line) for line in complete.splitlines() if line]
            if request_ids is not None:
                found = [r for r in found if r["request_id"] in request_ids]
            if len(found) >= count:
                return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} usage records, found {found}")
