"""Structured logs: one JSON object per line, one line per denial, no secrets."""

from __future__ import annotations

import json
import logging

import pytest

from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.observability.logs import JsonFormatter
from tests.conftest import KEY
from tests.extproc.messages import body, chat_body, request_headers


def test_formatter_writes_one_json_object_with_extra_fields() -> None:
    record = logging.LogRecord("x", logging.WARNING, "f.py", 1, "hello %s", ("you",), None)
    record.request_id = "r1"
    line = JsonFormatter(worker_port=5).format(record)
    parsed = json.loads(line)
    assert parsed["message"] == "hello you"
    assert (parsed["level"], parsed["request_id"], parsed["worker_port"]) == ("warning", "r1", 5)
    assert "\n" not in line


async def test_a_denial_is_one_log_line_with_request_id_and_no_secret(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="policy_sidecar.extproc.policy_stream")
    p = PolicyProcessor(services)
    data = chat_body("gpt-4o", messages=[{"role": "user", "content": "top secret prompt"}])
    await p.on_request_headers(request_headers(KEY, body=data))
    await p.on_request_body(body(data))
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "denied"]
    line = JsonFormatter().format(record)
    parsed = json.loads(line)
    assert (parsed["request_id"], parsed["policy_id"], parsed["status"]) == (
        "rid-1",
        "p-models",
        403,
    )
    assert KEY not in line
    assert "top secret prompt" not in line
