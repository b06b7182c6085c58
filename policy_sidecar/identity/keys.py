"""API key hashing, shared by the admin service (on create) and the sidecar (on lookup)."""

from __future__ import annotations

import hashlib

__all__ = ["hash_api_key"]


def hash_api_key(secret: str) -> str:
    """Return the lowercase sha256 hex digest of the key as sent by the client.

    Keys are 256-bit random strings, so a fast unsalted hash is enough: there is no
    dictionary to attack, and lookups need a deterministic value to index on.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
