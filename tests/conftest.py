"""Shared fixtures: an in-memory recorder and services built from a small config."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.extproc.services import Services
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.providers.registry import default_registry
from policy_sidecar.store.standalone import (
    StandaloneConfig,
    StandaloneIdentityResolver,
    parse_standalone_config,
)
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.record import UsageRecord
from tests import log_secrets
from tests.redis_cluster import LocalRedisCluster

KEY = "ps-test-key-0123456789abcdef"
OTHER_KEY = "ps-other-key-0123456789abcdef"

CONFIG = f"""
version: 1
applications:
  - id: app1
    org_id: org1
    keys:
      - environment: dev
        key: {KEY}
  - id: app2
    org_id: org2
    keys:
      - environment: production
        key: {OTHER_KEY}
models:
  - name: gpt-4o-mini
    provider: openai
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - name: gpt-4o
    provider: openai
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - name: fast
    provider: openai
    upstream_model: gpt-4o-mini
    route: cluster-b
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - name: retired
    provider: openai
    enabled: false
policies:
  - id: p-models
    name: allowed models
    type: model_allowlist
    scope: {{ app_id: app1 }}
    config: {{ models: ["gpt-4o-mini", "fast", "retired"] }}
  - id: p-size
    name: small bodies
    type: request_size
    config: {{ max_bytes: 2000 }}
"""


class ListRecorder:
    """Collects records in memory."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def record(self, record: UsageRecord) -> None:
        self.records.append(record)


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A private three-master Redis Cluster on loopback, shared by the session's tests
    (each uses its own keys), started on first use and stopped at the end."""
    cluster = LocalRedisCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def config() -> StandaloneConfig:
    return parse_standalone_config(CONFIG, source="test.yaml")


@pytest.fixture
def recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def counters() -> InMemoryCounterStore:
    return InMemoryCounterStore()


@pytest.fixture
def penalties() -> InMemoryPenaltyBox:
    return InMemoryPenaltyBox()


@pytest.fixture
def make_services(
    config: StandaloneConfig,
    recorder: ListRecorder,
    clock: FakeClock,
    counters: InMemoryCounterStore,
    penalties: InMemoryPenaltyBox,
) -> Callable[..., Services]:
    def make(**overrides: object) -> Services:
        fields: dict[str, object] = {
            "identities": StandaloneIdentityResolver(config.keys),
            "policies": StaticPolicySource(PolicyEngine(config.policies)),
            "enforcer": Enforcer(counters, penalties, clock),
            "providers": default_registry(),
            "estimator": load_estimator(),
            "recorder": recorder,
            "models": config.models,
            "clock": clock,
        }
        fields.update(overrides)
        return Services(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    return make_services()


@pytest.fixture(autouse=True)
def close_sdk_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every openai / anthropic client a test creates is closed when the test ends, so
    their pooled sockets do not surface later as ResourceWarnings (errors here)."""
    import anthropic
    import openai

    created: list[Any] = []
    for cls in (openai.OpenAI, openai.AzureOpenAI, anthropic.Anthropic):
        original = cls.__init__

        def init(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(self, *args, **kwargs)
            created.append(self)

        monkeypatch.setattr(cls, "__init__", init)
    yield
    for client in created:
        client.close()


_log_base: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _session_log_base(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where every subprocess log of this session lands (tmp_path and friends)."""
    _log_base.append(tmp_path_factory.getbasetemp())


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the run when an e2e subprocess logged an API key, admin token or prompt."""
    problems, summary = log_secrets.check(session, _log_base[0] if _log_base else None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if summary and reporter is not None:
        reporter.write_line(f"log secrets: {summary}")
    if problems:
        if reporter is not None:
            reporter.write_line("log secrets: FAILED", red=True)
            for problem in problems:
                reporter.write_line(f"  {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
