from __future__ import annotations

import pytest

from policy_sidecar.tokens import TokenEstimator, load_estimator


@pytest.fixture(scope="session")
def estimator() -> TokenEstimator:
    # Loading both encodings takes ~1.5 s: once per test session.
    return load_estimator()
