"""Who is calling: the identity value, the resolver protocol and key hashing.

Values only; the resolvers are ``store.standalone`` and ``store.identity_cache``."""

from __future__ import annotations
