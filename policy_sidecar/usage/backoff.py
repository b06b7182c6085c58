"""Exponential backoff with jitter for the recorder's retries and sink probes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Delays of base, 2·base, 4·base … capped at `cap`, each drawn uniformly from
    [d/2, d] ("equal jitter"): replicas that lost the database together do not come
    back in lockstep, and no delay collapses to zero. Not thread-safe."""

    base: float = 0.1
    cap: float = 5.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return delay / 2.0 + self.rng.random() * delay / 2.0

    def reset(self) -> None:
        self.attempt = 0
