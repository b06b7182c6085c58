"""Persistence: the standalone file store and (in production) Postgres repositories."""
