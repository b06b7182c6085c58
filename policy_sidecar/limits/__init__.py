"""Rate and token limits: the enforcer (reserve, settle, penalties) over a CounterStore."""

from __future__ import annotations
