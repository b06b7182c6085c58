"""Counter stores for rate limits and token limits (see docs/counters.md).

The contract and window arithmetic are ``counters.store``, ``counters.values`` and
``counters.windows``; the stores are imported by full path: ``counters.memory``,
``counters.redis_store``."""

from __future__ import annotations
