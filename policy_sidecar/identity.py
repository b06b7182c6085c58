"""Who is calling: the application, its organisation and environment, and the key used."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Identity:
    app_id: str
    org_id: str
    environment: str
    key_id: str


def hash_api_key(secret: str) -> str:
    """The stored form of an API key: SHA-256, hex. Keys are long random strings, so a
    fast unsalted hash is enough and lets a lookup be one dictionary or index probe."""
    return hashlib.sha256(secret.encode()).hexdigest()


class IdentityResolver(Protocol):
    """Resolves an API key to an identity. Returns None for unknown, revoked or expired
    keys; never raises for a bad key."""

    async def resolve(self, api_key: str) -> Identity | None: ...
