"""What policy evaluation returns: facts, not HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Violation:
    """One policy that said no. ``details`` go into the error body (limit, observed...)."""

    policy_id: str
    policy_name: str
    policy_type: str
    shadow: bool
    status: int
    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a phase: the first enforce-mode violation denies; shadow-mode
    violations are only reported."""

    denial: Violation | None = None
    shadow: tuple[Violation, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.denial is None


ALLOW = Decision()
