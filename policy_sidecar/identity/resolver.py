"""Who is calling: the application, its organisation and environment, and the key used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from policy_sidecar.identity.keys import hash_api_key

__all__ = ["Identity", "IdentityLookupThrottled", "IdentityResolver", "hash_api_key"]


@dataclass(frozen=True, slots=True)
class Identity:
    app_id: str
    org_id: str
    environment: str
    key_id: str
    # A valid key of an environment an operator disabled: refused with a 403
    # `environment_disabled`, never mistaken for an invalid key.
    environment_enabled: bool = True


class IdentityLookupThrottled(Exception):
    """The key is not cached and the store lookups allowed for unknown keys are used up
    (a flood of random keys): the caller should answer "try again shortly" (503), not
    401, since the key may well be valid."""


class IdentityResolver(Protocol):
    """Resolves an API key to an identity. Returns None for unknown, revoked or expired
    keys; a key of a disabled environment resolves with ``environment_enabled=False``.
    Never raises for a bad key, except `IdentityLookupThrottled` when a resolver
    protects its store."""

    async def resolve(self, api_key: str) -> Identity | None: ...
