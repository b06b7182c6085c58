"""Fallback across provider accounts through the real Envoy, against TLS fake providers.

A fallback group is an aggregate cluster over account clusters. An aggregate cluster
runs its own upstream filters, not its members', so the group's filters pick each
attempt's key by the chosen host's account: a 429 or 503 from account A's deployment is
retried at account B with B's key, and A's key never reaches B.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.cli.launcher import Stack, free_port, new_stack
from tests.e2e.conftest import KEY, usage_records
from tests.e2e.test_provider_tls_e2e import OPENAI_HOST, Fake, send, write_key

pytestmark = pytest.mark.e2e

PRICES = "input_price_per_mtok: 0.1, output_price_per_mtok: 1"
CONFIG = f"""
version: 1
applications:
  - id: fallback-app
    org_id: fallback-org
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: after-429, provider: openai, upstream_model: gpt-4o-mini, route: busy-first,
      {PRICES}}}
  - {{name: after-503, provider: openai, upstream_model: gpt-4o-mini, route: down-first,
      {PRICES}}}
  - {{name: healthy, provider: openai, upstream_model: gpt-4o-mini, route: spare-first,
      {PRICES}}}
"""
CHAT = {"messages": [{"role": "user", "content": "Say hi."}]}
# account -> what its fake answers
ACCOUNTS = {
    "openai-busy": ("--status", "429"),
    "openai-down": ("--status", "503"),
    "openai-spare": (),
}
GROUPS = [
    FallbackGroup("busy-first", ("openai-busy", "openai-spare")),
    FallbackGroup("down-first", ("openai-down", "openai-spare")),
    FallbackGroup("spare-first", ("openai-spare", "openai-busy")),
]


@dataclass
class Env:
    stack: Stack
    fakes: dict[str, Fake]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("provider-fallback")
    ca = trustme.CA()
    ca_file = workdir / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert(OPENAI_HOST).private_key_and_cert_chain_pem.write_to_path(
        str(workdir / "cert.pem")
    )
    config = workdir / "config.yaml"
    config.write_text(CONFIG)
    credentials = workdir / "credentials"
    credentials.mkdir()
    stack = new_stack(workdir)
    stack.credentials_dir = credentials
    fakes: dict[str, Fake] = {}
    try:
        for name, answer in ACCOUNTS.items():
            port = free_port()
            args = ["--tls-cert", str(workdir / "cert.pem"), *answer]
            stack.start_fake_provider(name, port, args=args, route=False)
            fakes[name] = Fake(port)
            write_key(credentials, name, f"sk-{name}")
            stack.accounts.append(
                ProviderAccount(
                    name=name,
                    provider="openai",
                    base_host=OPENAI_HOST,
                    credential_ref=name,
                    port=port,
                    ca_file=str(ca_file),
                    address="127.0.0.1",
                )
            )
        stack.fallback_groups.extend(GROUPS)
        stack.start_fake_provider()
        stack.start_sidecar(config)
        stack.start_envoy()
        yield Env(stack, fakes)
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("model", "first"), [("after-429", "openai-busy"), ("after-503", "openai-down")]
)
def test_a_refusal_falls_back_to_the_next_account_with_its_own_key(
    env: Env, model: str, first: str
) -> None:
    rid = str(uuid.uuid4())
    status, _, body = send(
        env.stack, "/v1/chat/completions", {**CHAT, "model": model}, request_id=rid
    )
    assert status == 200, body
    (refused,) = env.fakes[first].by_request_id(rid)
    (answered,) = env.fakes["openai-spare"].by_request_id(rid)
    assert refused["headers"]["authorization"] == f"Bearer sk-{first}"
    assert answered["headers"]["authorization"] == "Bearer sk-openai-spare"
    for attempt in (refused, answered):
        headers = attempt["headers"]
        assert all(KEY not in value for value in headers.values()), headers
        assert headers["host"] == OPENAI_HOST
        internal = [h for h in headers if h.startswith(("x-envoy-", "x-policy-sidecar-"))]
        assert internal == [], headers
        assert json.loads(attempt["body"])["model"] == "gpt-4o-mini"
    # Recorded (and charged) once, as the answer that reached the client.
    records = usage_records(env.stack, {rid})
    assert len(records) == 1, records
    (record,) = records
    assert (record["decision"], record["status_code"]) == ("allow", 200)
    assert (record["requested_model"], record["served_model"]) == (model, "gpt-4o-mini")
    assert record["completion_tokens"] > 0 and record["cost_usd"] > 0


def test_a_healthy_first_account_answers_alone_with_its_key(env: Env) -> None:
    rid = str(uuid.uuid4())
    status, _, body = send(
        env.stack, "/v1/chat/completions", {**CHAT, "model": "healthy"}, request_id=rid
    )
    assert status == 200, body
    (answered,) = env.fakes["openai-spare"].by_request_id(rid)
    assert answered["headers"]["authorization"] == "Bearer sk-openai-spare"
    assert env.fakes["openai-busy"].by_request_id(rid) == []


def test_an_account_answering_5xx_again_and_again_is_taken_out(env: Env) -> None:
    """Outlier detection: after 5 consecutive 5xx the host is ejected, so the group
    sends the next requests straight to the next account, without the failed attempt."""
    down = env.fakes["openai-down"]
    tried: list[int] = []
    for _ in range(10):
        rid = str(uuid.uuid4())
        status, _, body = send(
            env.stack, "/v1/chat/completions", {**CHAT, "model": "after-503"}, request_id=rid
        )
        assert status == 200, body
        tried.append(len(down.by_request_id(rid)))
        if tried[-1] == 0:
            break
    assert tried[-1] == 0, tried  # ejected: no attempt at the down account any more
    assert sum(tried) <= 5, tried


def test_no_other_accounts_key_ever_reached_an_account(env: Env) -> None:
    for name, fake in env.fakes.items():
        keys = {r["headers"].get("authorization") for r in fake.received()}
        assert keys <= {f"Bearer sk-{name}"}, (name, keys)
