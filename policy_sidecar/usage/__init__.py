"""Usage records, the asynchronous recorder, its spool and the sinks that store them.

Import the modules by full path; the Postgres sink is ``store.postgres.usage_sink``."""

from __future__ import annotations
