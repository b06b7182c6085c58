"""Backoff: doubling, capped, jittered within the upper half, reset."""

from __future__ import annotations

import random

import pytest

from policy_sidecar.usage.backoff import Backoff


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delays_double_up_to_the_cap_within_the_upper_half(seed: int) -> None:
    backoff = Backoff(base=0.1, cap=1.0, rng=random.Random(seed))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for ceiling in ceilings:
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert 0.05 <= backoff.next() <= 0.1


def test_huge_attempt_counts_do_not_overflow() -> None:
    backoff = Backoff(base=0.1, cap=5.0, attempt=10_000)
    assert 2.5 <= backoff.next() <= 5.0
