"""Where estimates run (inline, or the estimator's own worker threads) and what
``close`` does at shutdown (found by mutation testing)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import tiktoken

from policy_sidecar.providers import ParsedRequest
from policy_sidecar.tokens import TokenEstimator, load_encoding

O200K = load_encoding("o200k_base")


class WatchedEncoding:
    """The real o200k_base encoding, recording the thread that uses it; when ``gate`` is
    set, each call waits on it (a worker kept busy for as long as the test wants)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.threads: list[str] = []
        self.entered = threading.Event()
        self._gate = gate

    def encode_ordinary(self, text: str) -> list[int]:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        if self._gate is not None:
            self._gate.wait()
        return O200K.encode_ordinary(text)


def estimator(encoding: WatchedEncoding, *, offload_chars: int, workers: int = 2) -> TokenEstimator:
    encodings: dict[str, tiktoken.Encoding] = {"o200k_base": encoding}  # type: ignore[dict-item]
    return TokenEstimator(encodings, offload_chars=offload_chars, max_workers=workers)


def prompt(chars: int) -> ParsedRequest:
    return ParsedRequest("m", False, None, extra_text=("x" * chars,))


async def test_a_prompt_at_the_offload_size_runs_inline() -> None:
    watched = WatchedEncoding()
    est = estimator(watched, offload_chars=100)
    try:
        await est.estimate_async("gemini", prompt(100))
        assert watched.threads == [threading.current_thread().name]
    finally:
        est.close()


async def test_a_larger_prompt_runs_on_the_estimators_own_threads() -> None:
    watched = WatchedEncoding()
    est = estimator(watched, offload_chars=100)
    try:
        inline = est.estimate("gemini", prompt(101))
        assert await est.estimate_async("gemini", prompt(101)) == inline
        # a dedicated pool: big prompts never queue behind other default-executor work
        assert watched.threads[-1].startswith("tokens")
    finally:
        est.close()


async def test_close_cancels_queued_estimates_without_waiting_for_a_running_one() -> None:
    gate = threading.Event()
    watched = WatchedEncoding(gate)
    est = estimator(watched, offload_chars=0, workers=1)
    running = asyncio.ensure_future(est.estimate_async("gemini", prompt(10)))
    queued = asyncio.ensure_future(est.estimate_async("gemini", prompt(10)))
    try:
        assert await asyncio.to_thread(watched.entered.wait, 30)
        closer = threading.Thread(target=est.close)
        closer.start()
        # the running estimate is blocked until the gate opens: a close that waited for
        # it would still be running after this generous join
        closer.join(30)
        assert not closer.is_alive()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 30)  # a queued estimate that ran would block
    finally:
        gate.set()
    assert await running > 0
