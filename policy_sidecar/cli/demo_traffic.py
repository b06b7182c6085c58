"""The demo's background traffic: a request every second or so through Envoy, most
allowed, some denied (a model outside the allowlist, a prompt over the CEL limit), in
both OpenAI and Anthropic shapes, so the usage dashboard and denials are not empty."""

from __future__ import annotations

import itertools
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Traffic", "requests_cycle"]


@dataclass(frozen=True, slots=True)
class Call:
    key: str
    path: str
    body: dict[str, Any]


def _chat(key: str, model: str, text: str = "Hello!") -> Call:
    return Call(
        key,
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 64},
    )


def _messages(key: str, model: str) -> Call:
    return Call(
        key,
        "/v1/messages",
        {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi!"}]},
    )


def requests_cycle(support_key: str, batch_key: str) -> Iterator[Call]:
    """An endless, repeating mix: 6 allowed, 2 denied in every 8."""
    pattern = (
        _chat(support_key, "gpt-4o-mini"),
        _messages(support_key, "claude-haiku-4-5"),
        _chat(batch_key, "gpt-4o", "Summarise last night's tickets."),
        _chat(support_key, "gpt-4o"),  # denied: not in support-bot's allowlist
        _chat(support_key, "gpt-4o-mini", "Where is my order?"),
        _chat(batch_key, "gpt-4o-mini"),
        _chat(batch_key, "gpt-4o-mini", "lorem ipsum " * 3000),  # denied: the CEL limit
        _messages(support_key, "claude-haiku-4-5"),
    )
    return itertools.cycle(pattern)


def _headers(call: Call) -> dict[str, str]:
    if call.path == "/v1/messages":  # as the Anthropic SDK sends them
        return {
            "x-api-key": call.key,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }
    return {"authorization": f"Bearer {call.key}", "content-type": "application/json"}


def send(base_url: str, call: Call, timeout: float = 10.0) -> int:
    """One request; its HTTP status (0 when it could not be sent)."""
    request = urllib.request.Request(
        base_url + call.path,
        data=json.dumps(call.body).encode(),
        headers=_headers(call),
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
    except OSError:
        return 0


class Traffic:
    """Sends `requests_cycle` every `interval` seconds on a thread until `stop()`."""

    def __init__(self, base_url: str, calls: Iterator[Call], interval: float = 1.0) -> None:
        self._base_url = base_url
        self._calls = calls
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self.statuses: dict[int, int] = {}

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status = send(self._base_url, next(self._calls))
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
