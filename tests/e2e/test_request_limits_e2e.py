"""Through the real Envoy: bodies that are valid JSON but no request are 400s for the app.

Both once came back as a 500 with a traceback in the sidecar's log, recorded as
``error`` with no app.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from policy_sidecar.cli.launcher import Stack
from tests.e2e.conftest import KEY, usage_records

pytestmark = pytest.mark.e2e

HELLO = '"messages": [{"role": "user", "content": "hi"}]'
BODIES = {
    "openai max_tokens 400 digits": (
        "/v1/chat/completions",
        f'{{"model": "gpt-4o-mini", {HELLO}, "max_tokens": {10**400}}}',
        "'max_tokens'",
    ),
    "openai nesting 5,000": (
        "/v1/chat/completions",
        f'{{"model": "gpt-4o-mini", {HELLO}, "metadata": {"[" * 5000}{"]" * 5000}}}',
        "nests deeper than 128",
    ),
    "anthropic max_tokens 400 digits": (
        "/v1/messages",
        f'{{"model": "gpt-4o-mini", {HELLO}, "max_tokens": {10**400}}}',
        "'max_tokens'",
    ),
}


@pytest.mark.parametrize(("path", "data", "fragment"), BODIES.values(), ids=list(BODIES))
def test_valid_json_that_is_no_request_is_400_recorded_for_the_app(
    stack: Stack, path: str, data: str, fragment: str
) -> None:
    rid = f"e2e-{uuid.uuid4()}"
    request = urllib.request.Request(
        f"{stack.url}{path}",
        data=data.encode(),
        headers={
            "authorization": f"Bearer {KEY}",
            "content-type": "application/json",
            "x-request-id": rid,
        },
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=20)
    assert info.value.code == 400
    sent = json.loads(info.value.read())
    error = sent["error"]
    if path == "/v1/messages":
        assert sent["type"] == "error"
        assert error["type"] == "invalid_request_error"
    else:
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_request")
    assert fragment in error["message"]
    [record] = usage_records(stack, {rid})
    assert (record["decision"], record["status_code"]) == ("deny", 400)
    assert (record["app_id"], record["org_id"]) == ("e2e-app", "e2e-org")
