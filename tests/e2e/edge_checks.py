"""What must hold at the edge of every running stack, standalone or production.

Each check sends real HTTP through Envoy and the sidecar to the fake provider, which
reports in response headers the path and header names that reached it. The stack under
test must allow ``gpt-4o-mini`` and ``gemini-2.0-flash``, deny ``gpt-4o`` by a model
allowlist, and not deploy ``gemini-secret``.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from policy_sidecar.fakeprovider.app import RECEIVED_HEADERS_HEADER, RECEIVED_PATH_HEADER

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
DENIED_CHAT = {**CHAT, "model": "gpt-4o"}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
GEMINI_PATH = "/v1beta/models/gemini-2.0-flash:generateContent"

# Endpoints the providers serve but the sidecar does not meter: each is a 404 by default.
UNMETERED = (
    ("POST", "/v1/images/variations"),
    ("POST", "/v1/audio/voices"),
    ("POST", "/v1/assistants"),
    ("POST", "/v1/messages/count"),
)
# Known endpoints the sidecar cannot meter yet (providers/unmetered.py): 403
# endpoint_not_metered whatever unknown_paths says, so passthrough opens no leak.
NOT_METERED = (
    ("POST", "/v1/batches", None),
    ("GET", "/v1/batches/batch_abc", None),
    ("POST", "/v1/files", None),
    ("GET", "/v1/files", None),
    ("POST", "/v1/uploads", None),
    ("POST", "/v1/messages/batches", None),
    ("POST", "/V1/Batches/", None),
    ("POST", "/v1/realtime/sessions", None),
    ("POST", "/v1/realtime/client_secrets", None),
    ("GET", "/v1/realtime?model=gpt-realtime", None),
    ("POST", "/openai/batches?api-version=2024-10-21", None),
    ("POST", "/v1beta/models/gemini-2.0-flash:batchGenerateContent", None),
    ("POST", "/upload/v1beta/files", None),
    # The Responses API over WebSocket: a metered path, refused for the upgrade.
    ("GET", "/v1/responses", {"connection": "Upgrade", "upgrade": "websocket"}),
)
# Spellings of /v1/chat/completions: each must be judged as chat (gpt-4o: 403) or
# refused, never reach the provider unjudged.
CHAT_SPELLINGS = (
    "/v1//chat/completions",
    "/V1/chat/completions",
    "/v1/CHAT/completions",
    "/v1/chat/completions/",
    "/v1/chat/completions;x=1",
    "/v1;a/chat/completions",
    "/v1/chat/%63ompletions",
    "/v1/chat/%43ompletions",
    "/v1/x/../chat/completions",
    "/v1/chat/./completions",
)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def upstream(self) -> str | None:
        """The fake provider that answered, or None when Envoy or the sidecar did."""
        return self.headers.get("x-fake-provider")

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


def send(
    url: str,
    method: str,
    path: str,
    *,
    key: str | None,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    # http.client sends the path byte for byte (urllib would re-quote it).
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    try:
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            all_headers["authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def check_unmetered_endpoints_are_denied(url: str, key: str) -> None:
    for method, path in UNMETERED:
        reply = send(url, method, path, key=key, body={} if method == "POST" else None)
        assert (reply.status, reply.upstream) == (404, None), (method, path, reply)
        assert reply.error["code"] == "unknown_endpoint", (method, path)


def check_not_metered_endpoints_are_denied(url: str, key: str) -> None:
    for method, path, headers in NOT_METERED:
        body = {} if method == "POST" else None
        reply = send(url, method, path, key=key, body=body, headers=headers)
        assert (reply.status, reply.upstream) == (403, None), (method, path, reply)
        if headers is not None:
            # Envoy has no upgrade_configs, so it refuses the upgrade itself (403
            # upgrade_failed) before the sidecar sees it; the sidecar's own refusal of
            # upgrades (tests/extproc/test_edge_headers.py) is the second line.
            continue
        assert reply.error["code"] == "endpoint_not_metered", (method, path, reply)
        assert "not metered" in reply.error["message"], reply.error


def check_free_routes_are_allowed(url: str, key: str) -> None:
    reply = send(url, "GET", "/v1/models", key=key)
    assert (reply.status, reply.upstream) == (200, "fake-provider"), reply
    assert send(url, "GET", "/v1/models", key=None).status == 401


def check_no_spelling_bypasses_policy(url: str, key: str) -> None:
    for path in CHAT_SPELLINGS:
        reply = send(url, "POST", path, key=key, body=DENIED_CHAT)
        assert (reply.status, reply.upstream) == (403, None), (path, reply)
        assert reply.error["code"] == "model_not_allowed", path
    # Envoy refuses an escaped slash outright.
    reply = send(url, "POST", "/v1/chat%2Fcompletions", key=key, body=DENIED_CHAT)
    assert (reply.status, reply.upstream) == (400, None), reply
    # Gemini's ':' escaped: still Gemini, still judged (the model is not deployed).
    path = "/v1beta/models/gemini-secret%3AgenerateContent"
    reply = send(url, "POST", path, key=key, body=GEMINI)
    assert (reply.status, reply.upstream) == (404, None), reply
    assert reply.error["code"] == 404, reply.body  # Gemini's error shape
    assert "gemini-secret" in reply.error["message"]


# Headers a caller could use to pick which organisation or project of the provider
# account (the gateway's, its key injected) pays, and a proxy credential: never sent on.
SCOPING = {
    "openai-organization": "org-someone-else",
    "openai-project": "proj_someone_else",
    "x-goog-user-project": "someone-elses-project",
    "proxy-authorization": "Basic c2VjcmV0",
}


def check_internal_headers_never_pass(url: str, key: str) -> None:
    internal = {
        # The sidecar's own gRPC cluster, present in every Envoy config.
        "x-policy-sidecar-route": "policy_sidecar",
        "x-policy-sidecar-app": "someone-else",
        "x-policy-sidecar-anything": "1",
        # Envoy's own names: it removes those it would obey, and the rest upstream.
        "x-envoy-original-path": "/v1/elsewhere",
        "x-envoy-retry-on": "5xx",
    }
    for method, path, body in (
        ("POST", "/v1/chat/completions", CHAT),
        ("POST", GEMINI_PATH, GEMINI),
        ("GET", "/v1/models", None),
    ):
        reply = send(url, method, path, key=key, body=body, headers={**internal, **SCOPING})
        assert (reply.status, reply.upstream) == (200, "fake-provider"), (path, reply)
        received = reply.headers[RECEIVED_HEADERS_HEADER].split(",")
        assert not [h for h in received if h.startswith(("x-policy-sidecar-", "x-envoy-"))]
        assert "authorization" not in received
        assert not set(SCOPING) & set(received), received


def check_query_key_only_on_gemini(url: str, key: str) -> None:
    reply = send(url, "POST", f"{GEMINI_PATH}?alt=sse&key={key}", key=None, body=GEMINI)
    assert (reply.status, reply.upstream) == (200, "fake-provider"), reply
    assert reply.headers[RECEIVED_PATH_HEADER] == f"{GEMINI_PATH}?alt=sse"
    reply = send(url, "POST", f"{GEMINI_PATH}?key={key}", key=None, body=GEMINI)
    assert reply.headers[RECEIVED_PATH_HEADER] == GEMINI_PATH
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/models"):
        for header_key in (None, key):
            method, body = ("GET", None) if path == "/v1/models" else ("POST", CHAT)
            reply = send(url, method, f"{path}?key={key}", key=header_key, body=body)
            assert (reply.status, reply.upstream) == (401, None), (path, reply)
            assert "query string" in reply.error["message"]


def check_all(url: str, key: str) -> None:
    check_unmetered_endpoints_are_denied(url, key)
    check_not_metered_endpoints_are_denied(url, key)
    check_free_routes_are_allowed(url, key)
    check_no_spelling_bypasses_policy(url, key)
    check_internal_headers_never_pass(url, key)
    check_query_key_only_on_gemini(url, key)
