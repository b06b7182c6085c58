"""Prompt token estimation.

Placeholder of the walking skeleton: a character-count estimate (about four characters
per token). The providers issue replaces it with tiktoken-based estimation.
"""

from __future__ import annotations

from policy_sidecar.providers.base import ParsedRequest

__all__ = ["TokenEstimator", "load_estimator"]


class TokenEstimator:
    def estimate(self, provider: str, parsed: ParsedRequest) -> int:
        chars = sum(len(m.text) for m in parsed.messages) + sum(len(t) for t in parsed.extra_text)
        return max(1, chars // 4) + 3 * len(parsed.messages)

    async def estimate_async(self, provider: str, parsed: ParsedRequest) -> int:
        return self.estimate(provider, parsed)


def load_estimator(encodings_dir: str | None = None) -> TokenEstimator:
    return TokenEstimator()
