"""Through the real Envoy with the openai SDK as the client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest

from policy_sidecar.cli.launcher import Stack, start_stack
from tests.e2e.conftest import KEY, usage_records, write_config

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Write a haiku about proxies."}]


def client(stack: Stack, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=20)


def direct(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{stack.upstream_port}/v1", api_key="x", max_retries=0
    )


def request_id() -> str:
    return f"e2e-{uuid.uuid4()}"


def test_allowed_completion_passes_unchanged_and_is_recorded(stack: Stack) -> None:
    rid = request_id()
    via = client(stack).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=7,
        extra_headers={"x-request-id": rid},  # type: ignore[arg-type]
    )
    straight = direct(stack).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=7
    )  # type: ignore[arg-type]
    assert via.choices[0].message.content == straight.choices[0].message.content
    assert via.usage == straight.usage
    assert via.model == "gpt-4o-mini"
    [record] = usage_records(stack, {rid})
    assert record["decision"] == "allow"
    assert record["status_code"] == 200
    assert record["app_id"] == "e2e-app"
    assert record["usage_reported"] is True
    assert via.usage is not None
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (
        via.usage.prompt_tokens,
        via.usage.completion_tokens,
        via.usage.total_tokens,
    )


@pytest.mark.parametrize("client_asks_for_usage", [True, False])
def test_streaming_passes_through_and_usage_is_always_known(
    stack: Stack, client_asks_for_usage: bool
) -> None:
    rid = request_id()
    options = {"stream_options": {"include_usage": True}} if client_asks_for_usage else {}
    stream = client(stack).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=20,
        stream=True,
        extra_headers={"x-request-id": rid},
        **options,  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    straight = direct(stack).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=20
    )  # type: ignore[arg-type]
    assert text == straight.choices[0].message.content
    # The sidecar asked for the usage chunk even when the client did not.
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    [record] = usage_records(stack, {rid})
    assert record["streamed"] is True
    assert record["usage_reported"] is True
    assert record["completion_tokens"] == 20
    assert record["ttft_ms"] is not None and record["ttft_ms"] <= record["latency_ms"]


def test_forbidden_model_is_403_naming_the_policy(stack: Stack) -> None:
    rid = request_id()
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(stack).chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            extra_headers={"x-request-id": rid},  # type: ignore[arg-type]
        )
    assert info.value.status_code == 403
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_allowed"
    assert body["details"]["policy_id"] == "pol-allow"
    assert "mini only" in body["message"]
    [record] = usage_records(stack, {rid})
    assert (record["decision"], record["denied_by"], record["status_code"]) == (
        "deny",
        "pol-allow",
        403,
    )


def test_oversized_body_is_413(stack: Stack) -> None:
    rid = request_id()
    big = [{"role": "user", "content": "x" * 40_000}]
    with pytest.raises(openai.APIStatusError) as info:
        client(stack).chat.completions.create(
            model="gpt-4o-mini",
            messages=big,
            extra_headers={"x-request-id": rid},  # type: ignore[arg-type]
        )
    assert info.value.status_code == 413
    assert isinstance(info.value.body, dict)
    assert info.value.body["details"]["policy_id"] == "pol-size"
    [record] = usage_records(stack, {rid})
    assert record["denied_by"] == "pol-size"
    assert record["request_bytes"] > 40_000


def test_bad_key_is_401(stack: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(stack, key="ps-not-a-real-key-000000").chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
    assert info.value.status_code == 401


def test_malformed_json_is_400_in_openai_shape(stack: Stack) -> None:
    request = urllib.request.Request(
        f"{stack.url}/v1/chat/completions",
        data=b'{"model": "gpt-4o-mini", "messages": [',
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert json.loads(info.value.read())["error"]["type"] == "invalid_request_error"


def test_sidecar_down_fails_closed(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, write_config(tmp_path), workers=1)
    try:
        assert client(stack).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices  # type: ignore[arg-type]
        stack.processes.pop("sidecar").stop()
        with pytest.raises(openai.APIStatusError) as info:
            client(stack).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert info.value.status_code == 503
    finally:
        stack.stop()
