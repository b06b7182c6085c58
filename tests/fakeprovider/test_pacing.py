"""The fake provider paces stream chunks like a model: a server default, a header override."""

from __future__ import annotations

import time

import aiohttp

from policy_sidecar.cli.launcher import free_port
from policy_sidecar.fakeprovider.app import CHUNK_DELAY_HEADER, run_fake_provider

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 10,
    "stream": True,
}


async def stream(port: int, headers: dict[str, str]) -> tuple[int, float]:
    """(chunks received, seconds from the request to the end of the stream)."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=BODY,
            headers={"accept-encoding": "identity", **headers},
        ) as response,
    ):
        assert response.status == 200
        events = [line async for line in response.content if line.startswith(b"data:")]
    return len(events), time.monotonic() - started


async def test_chunks_leave_no_sooner_than_their_schedule() -> None:
    port = free_port()
    runner = await run_fake_provider("127.0.0.1", port, chunk_delay=0.05)
    try:
        # Chunk i is written no sooner than i * delay after the first (a sleep never
        # ends early), so a stream of n chunks lasts at least (n - 1) * delay.
        chunks, seconds = await stream(port, {})
        assert chunks >= 10
        assert seconds >= (chunks - 1) * 0.05 - 0.001  # the clock's resolution
        # The header overrides the server's default for one request.
        slower, seconds = await stream(port, {CHUNK_DELAY_HEADER: "0.1"})
        assert seconds >= (slower - 1) * 0.1 - 0.001
    finally:
        await runner.cleanup()
