"""The fake provider's HTTP server (aiohttp): all five providers' APIs, JSON and streams,
and the non-token routes (images, audio with multipart uploads, moderation, rerank,
token counting: ``fakeprovider.media``).

It recognises a request with the sidecar's own provider registry and answers with the
providers' sample bodies (``providers.samples``), so every provider's wire format is
served exactly as its parser expects it. Reported usage: prompt tokens as the estimator
counts them (for OpenAI that is what the real API reports), completion tokens = the
request's max output tokens (default 12), one streamed chunk per completion token.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import deque
from typing import Any

from aiohttp import web

from policy_sidecar.fakeprovider.media import is_media, media_answer
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.providers import RequestError, Route, Usage, default_registry
from policy_sidecar.providers._multipart import parse_form
from policy_sidecar.providers._openai_media import FORM_OPERATIONS
from policy_sidecar.tokens import TokenEstimator, load_estimator

# Seconds between stream chunks (as a model streams: e.g. 0.002); 0 sends them as fast
# as possible. The header overrides the server's default (``--chunk-delay``). Paced on an
# absolute schedule, so chunk i leaves i*delay after the first whatever the sleeps' jitter.
CHUNK_DELAY_HEADER = "x-fake-chunk-delay"
# Cached prompt tokens to report (prompt caching), e.g. to exercise cache accounting.
CACHED_TOKENS_HEADER = "x-fake-cached-tokens"
# On every response: the path (with query) and the header names the fake received, so
# tests can check what Envoy forwarded upstream.
RECEIVED_PATH_HEADER = "x-fake-received-path"
RECEIVED_HEADERS_HEADER = "x-fake-received-headers"
# Every request that reached the fake (path, headers with values, the body's first
# RECEIVED_BODY_BYTES), newest last, as JSON: tests check what Envoy sent upstream, keys
# included. Asked directly, not through Envoy.
RECEIVED_PATH = "/_fake/received"
RECEIVED_BODY_BYTES = 64 * 1024
# A JSON object of headers the fake adds to its answer (e.g. headers only the gateway
# may set, to check they never reach the client).
RESPONSE_HEADERS_HEADER = "x-fake-response-headers"
# On answers to the non-token routes: the model field the fake received.
MODEL_HEADER = "x-fake-model"
DEFAULT_COMPLETION_TOKENS = 12
# Like a real model's output cap: the fake writes text for every completion token, so an
# absurd max_tokens (2^31) must not make it allocate gigabytes.
MAX_COMPLETION_TOKENS = 16_384
_WORDS = ("The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog.")


def reply_text(tokens: int) -> str:
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(tokens))


def received(request: web.Request) -> dict[str, str]:
    """What reached the fake: the raw path with query, and the request's header names."""
    names = sorted({name.lower() for name in request.headers})
    return {
        RECEIVED_PATH_HEADER: request.raw_path,
        RECEIVED_HEADERS_HEADER: ",".join(names),
    }


def asked_headers(request: web.Request) -> dict[str, str]:
    """The headers the request asks the fake to answer with (`RESPONSE_HEADERS_HEADER`)."""
    raw = request.headers.get(RESPONSE_HEADERS_HEADER)
    if not raw:
        return {}
    asked = json.loads(raw)
    return {str(k): str(v) for k, v in asked.items()} if isinstance(asked, dict) else {}


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return web.json_response(body, status=status)


class FakeProvider:
    def __init__(
        self,
        estimator: TokenEstimator,
        name: str = "fake",
        *,
        status: int | None = None,
        status_count: int | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        self.name = name
        self._chunk_delay = chunk_delay
        self._registry = default_registry()
        self._estimator = estimator
        # Answer API requests with this error status (e.g. 429: an overloaded
        # deployment) instead of a completion: the first status_count ones, or all.
        self._status = status
        self._status_left = status_count
        self.received: deque[dict[str, Any]] = deque(maxlen=1000)

    async def show_received(self, _request: web.Request) -> web.Response:
        return web.json_response(list(self.received))

    def usage_for(self, route: Route, request: dict[str, Any], cached: int) -> Usage:
        provider = self._registry.get(route.provider)
        parsed = provider.parse_request(route, request)
        prompt = self._estimator.estimate(route.provider, parsed)
        completion = (
            0
            if route.operation in ("embeddings", "embed")
            else min(parsed.max_output_tokens or DEFAULT_COMPLETION_TOKENS, MAX_COMPLETION_TOKENS)
        )
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_tokens=min(cached, prompt),
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw = await request.read()
        self.received.append(
            {
                "path": request.raw_path,
                "headers": headers,
                "body": raw[:RECEIVED_BODY_BYTES].decode("utf-8", "replace"),
            }
        )
        if self._status is not None and self._status_left != 0:
            if self._status_left is not None:
                self._status_left -= 1
            refused = _error(self._status, f"{self.name} answers {self._status}")
            refused.headers["retry-after"] = "1"
            return refused
        matched = self._registry.match(request.method, request.path_qs)
        if matched is None:
            return _error(404, f"Unknown request URL: {request.method} {request.path}")
        provider, route = matched
        raw = await request.read()
        if route.operation in FORM_OPERATIONS:
            try:
                body = parse_form(raw, request.headers.get("content-type", ""))
            except RequestError as exc:
                return _error(400, f"Invalid multipart body: {exc}")
        else:
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        if is_media(route):
            try:
                provider.parse_request(route, body)
            except RequestError as exc:
                return _error(400, str(exc))
            content_type, data = media_answer(route, body, prompt_tokens=max(len(raw) // 4, 1))
            # The model the fake received (a deployment alias is rewritten on the way).
            model = body.get("model")
            headers = {"content-type": content_type, MODEL_HEADER: str(model or "")}
            return web.Response(body=data, headers=headers)
        cached = int(request.headers.get(CACHED_TOKENS_HEADER, "0") or 0)
        try:
            usage = self.usage_for(route, body, cached)
        except RequestError as exc:
            return _error(400, str(exc))
        sample = build_response(route, body, usage, text=reply_text(usage.completion_tokens or 1))
        # Like the real APIs, compress when the client accepts it.
        gzip = "gzip" in request.headers.get("accept-encoding", "")
        if len(sample.chunks) == 1 and "json" in sample.content_type:
            plain = web.Response(body=sample.body, headers={"content-type": sample.content_type})
            if gzip:
                plain.enable_compression(web.ContentCoding.gzip)
            return plain
        delay = float(request.headers.get(CHUNK_DELAY_HEADER, "") or self._chunk_delay)
        response = web.StreamResponse(
            headers={
                "content-type": sample.content_type,
                "cache-control": "no-cache",
                "x-fake-provider": self.name,
                **received(request),
                **asked_headers(request),
            }
        )
        if gzip:
            response.enable_compression(web.ContentCoding.gzip)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, chunk in enumerate(sample.chunks):
            if delay and i:
                await asyncio.sleep(max(0.0, start + i * delay - loop.time()))
            await response.write(chunk)
        await response.write_eof()
        return response


async def models(_request: web.Request) -> web.Response:
    data = [
        {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
        for m in ("gpt-4o", "gpt-4o-mini")
    ]
    return web.json_response({"object": "list", "data": data})


def create_app(
    estimator: TokenEstimator | None = None,
    *,
    name: str = "fake",
    status: int | None = None,
    status_count: int | None = None,
    chunk_delay: float = 0.0,
) -> web.Application:
    fake = FakeProvider(
        estimator or load_estimator(),
        name,
        status=status,
        status_count=status_count,
        chunk_delay=chunk_delay,
    )

    @web.middleware
    async def identify(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            response.headers["x-fake-provider"] = name
            response.headers.update(received(request))
            response.headers.update(asked_headers(request))
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[identify])
    app.router.add_get("/v1/models", models)
    app.router.add_get(RECEIVED_PATH, fake.show_received)
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    return app


async def run_fake_provider(
    host: str,
    port: int,
    *,
    name: str = "fake",
    ssl_context: ssl.SSLContext | None = None,
    status: int | None = None,
    status_count: int | None = None,
    chunk_delay: float = 0.0,
) -> web.AppRunner:
    """Starts the server (HTTPS with ``ssl_context``) and returns its runner
    (``await runner.cleanup()`` stops it)."""
    app = create_app(name=name, status=status, status_count=status_count, chunk_delay=chunk_delay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
