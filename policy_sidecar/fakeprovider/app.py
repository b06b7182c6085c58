"""The fake provider's HTTP server (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

from policy_sidecar.fakeprovider import openai

# Seconds between stream chunks; 0 sends them as fast as possible.
CHUNK_DELAY_HEADER = "x-fake-chunk-delay"


def _error(status: int, message: str, code: str) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return web.json_response(body, status=status)


async def _read_json(request: web.Request) -> dict[str, object] | web.Response:
    try:
        body = json.loads(await request.read())
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.", "invalid_json")
    return body


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body.get("messages"), list):
        return _error(400, "'messages' is a required property", "missing_required_parameter")
    request_id = uuid.uuid4().hex[:24]
    if not body.get("stream"):
        return web.Response(
            body=openai.chat_json(body, request_id=request_id), content_type="application/json"
        )
    delay = float(request.headers.get(CHUNK_DELAY_HEADER, "0") or 0)
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    )
    await response.prepare(request)
    for chunk in openai.chat_sse(body, request_id=request_id):
        await response.write(chunk)
        if delay:
            await asyncio.sleep(delay)
    await response.write_eof()
    return response


async def models(_request: web.Request) -> web.Response:
    data = [
        {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
        for m in ("gpt-4o", "gpt-4o-mini")
    ]
    return web.json_response({"object": "list", "data": data})


def create_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    return app


async def run_fake_provider(host: str, port: int) -> web.AppRunner:
    """Starts the server and returns its runner (``await runner.cleanup()`` stops it)."""
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
