"""Prompt-token estimation: tiktoken counts plus per-provider framing and image estimates."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import tiktoken

from policy_sidecar.providers.base import ParsedRequest
from policy_sidecar.tokens._encodings import (
    DEFAULT_PROFILE,
    O200K,
    PROFILES,
    Profile,
    encoding_for_model,
)

# Above this many characters of prompt text, estimate_async tokenizes in a worker thread
# (tiktoken's Rust core releases the GIL), so the event loop keeps serving other streams.
OFFLOAD_CHARS = 16 * 1024
# tiktoken is super-linear on long runs without a pre-token boundary ("aaaa…" costs
# ~0.7 s per MB in one piece); long texts are therefore counted in windows cut at
# whitespace, which keeps the cost linear (~0.25 s/MB worst case, ~0.08 s/MB for prose)
# and changes the count by at most a token per window.
WINDOW_CHARS = 32 * 1024
# Texts beyond this are counted exactly on their first EXACT_CHARS and extrapolated by
# length: the worst-case cost per request is bounded, the estimate stays proportional.
EXACT_CHARS = 1024 * 1024
# Roles and names ("system", "user", a tool's name) repeat on every request: the counts
# of strings this short are remembered per encoding (a native call each otherwise, a
# third of a chat's calls), up to SHORT_ENTRIES of them (then forgotten at once).
SHORT_CHARS = 64
SHORT_ENTRIES = 4096


def _windows(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    while len(text) - start > WINDOW_CHARS:
        end = start + WINDOW_CHARS
        cut = text.rfind(" ", start + WINDOW_CHARS // 2, end)
        end = cut if cut > 0 else end
        out.append(text[start:end])
        start = end
    out.append(text[start:])
    return out


def count_text(encoding: tiktoken.Encoding, text: str) -> int:
    """Tokens in ``text``, special-token strings counted as plain text, cost bounded."""
    if len(text) <= WINDOW_CHARS:
        return len(encoding.encode_ordinary(text))
    head = text[:EXACT_CHARS]
    tokens = sum(len(encoding.encode_ordinary(w)) for w in _windows(head))
    if len(text) > EXACT_CHARS:
        tokens = round(tokens * len(text) / EXACT_CHARS)
    return tokens


def text_chars(parsed: ParsedRequest) -> int:
    return sum(len(m.text) for m in parsed.messages) + sum(len(t) for t in parsed.extra_text)


class TokenEstimator:
    """Estimates a request's prompt tokens before it is sent. Thread-safe; its only
    state is the remembered counts of short strings (the same counts, computed once).

    Built once at start-up by ``load_estimator``; ``estimate`` is synchronous and cheap
    for ordinary prompts, ``estimate_async`` moves large prompts to a worker thread.
    Never returns 0 for a request with text (no silent zeroes).
    """

    def __init__(
        self,
        encodings: Mapping[str, tiktoken.Encoding],
        *,
        profiles: Mapping[str, Profile] | None = None,
        offload_chars: int = OFFLOAD_CHARS,
        max_workers: int = 2,
    ) -> None:
        if O200K not in encodings:
            raise ValueError("the o200k_base encoding is required (proxy for other vendors)")
        self._encodings = dict(encodings)
        self._profiles = dict(PROFILES if profiles is None else profiles)
        self._offload_chars = offload_chars
        # A dedicated pool: big prompts must not queue behind other default-executor work.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tokens")
        # (encoding name, text) -> tokens, for texts of at most SHORT_CHARS.
        self._short: dict[tuple[str, str], int] = {}

    def encoding(self, provider: str, model: str | None) -> tiktoken.Encoding:
        # encoding_for_model remembers tiktoken's table lookup (the reader asks per line).
        profile = self._profiles.get(provider, DEFAULT_PROFILE)
        name = encoding_for_model(model) if profile.exact_encoding else O200K
        return self._encodings.get(name) or self._encodings[O200K]

    def count_short(self, enc: tiktoken.Encoding, text: str) -> int:
        """``count_text(enc, text)``, remembered when the text is short."""
        if len(text) > SHORT_CHARS:
            return count_text(enc, text)
        key = (enc.name, text)
        tokens = self._short.get(key)
        if tokens is None:
            tokens = count_text(enc, text)
            if len(self._short) >= SHORT_ENTRIES:
                self._short.clear()  # roles and names are few: only odd traffic fills it
            self._short[key] = tokens
        return tokens

    def estimate(self, provider: str, parsed: ParsedRequest) -> int:
        profile = self._profiles.get(provider, DEFAULT_PROFILE)
        enc = self.encoding(provider, parsed.model)
        text_tokens = 0
        for message in parsed.messages:
            text_tokens += profile.per_message + self.count_short(enc, message.role)
            text_tokens += count_text(enc, message.text)
            if message.name:
                text_tokens += profile.per_name + self.count_short(enc, message.name)
        for text in parsed.extra_text:
            text_tokens += count_text(enc, text)
        tokens = text_tokens if profile.factor == 1.0 else round(text_tokens * profile.factor)
        if parsed.messages:
            tokens += profile.reply_priming
        tokens += parsed.image_count * profile.image_tokens + parsed.pretokenized_tokens
        return tokens

    async def estimate_async(self, provider: str, parsed: ParsedRequest) -> int:
        if text_chars(parsed) <= self._offload_chars:
            return self.estimate(provider, parsed)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.estimate, provider, parsed)

    def close(self) -> None:
        """Stop the worker threads (at shutdown)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
