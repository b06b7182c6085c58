"""Model deployments: the models the platform team provisions, and their prices.

Values only; the cache in front of Postgres is ``store.model_catalog``."""

from __future__ import annotations
