"""Persistence: the standalone file store, Postgres repositories, key hashing and
cache invalidation."""

from __future__ import annotations
