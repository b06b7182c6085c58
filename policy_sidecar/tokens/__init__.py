"""Prompt-token estimation with tiktoken encodings loaded offline and hash-verified.

Build one ``TokenEstimator`` at start-up with ``load_estimator``; it raises
``EncodingLoadError`` (naming the file and the problem) instead of failing later.
"""

from __future__ import annotations

from policy_sidecar.tokens._encodings import PROFILES, Profile, encoding_for_model
from policy_sidecar.tokens._estimator import TokenEstimator, count_text
from policy_sidecar.tokens._loader import (
    ENCODINGS_DIR_ENV,
    EXPECTED_SHA256,
    EncodingLoadError,
    load_encoding,
)

__all__ = [
    "ENCODINGS_DIR_ENV",
    "EXPECTED_SHA256",
    "PROFILES",
    "EncodingLoadError",
    "Profile",
    "TokenEstimator",
    "count_text",
    "encoding_for_model",
    "load_encoding",
    "load_estimator",
]


def load_estimator(encodings_dir: str | None = None) -> TokenEstimator:
    """Load cl100k_base and o200k_base (bundled, or from ``encodings_dir``) and verify them.

    Takes one to two seconds (parsing ~300k BPE ranks); call once at start-up.
    """
    encodings = {name: load_encoding(name, encodings_dir) for name in EXPECTED_SHA256}
    return TokenEstimator(encodings)
