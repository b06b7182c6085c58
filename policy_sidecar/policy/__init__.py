"""Policy evaluation (no I/O). CEL support lives in ``policy.cel``."""

from __future__ import annotations
