"""The contract every CEL engine keeps: phases, variables, errors, compiled expressions.

Imports no engine: ``cel_engines`` implements it, ``cel`` is the public face.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, Protocol

__all__ = [
    "DEFAULT_ENGINE",
    "POST_VARIABLES",
    "PRE_VARIABLES",
    "CelCompileError",
    "CelEvaluationError",
    "CompiledExpression",
    "EngineName",
    "Phase",
    "VarType",
    "variables_for",
]

EngineName = Literal["cel-expr", "cel-python"]
DEFAULT_ENGINE: EngineName = "cel-expr"


class Phase(StrEnum):
    PRE = "pre"  # before the request goes upstream
    POST = "post"  # after the response (usage known)


class VarType(StrEnum):
    BOOL = "bool"
    INT = "int"
    DOUBLE = "double"
    STRING = "string"


PRE_VARIABLES: Mapping[str, VarType] = MappingProxyType(
    {
        "request_size_bytes": VarType.INT,
        "estimated_tokens": VarType.INT,
        "model": VarType.STRING,
        "org_id": VarType.STRING,
        "app_id": VarType.STRING,
        "environment": VarType.STRING,
        "provider": VarType.STRING,
        "stream": VarType.BOOL,
        "max_tokens": VarType.INT,
    }
)

POST_VARIABLES: Mapping[str, VarType] = MappingProxyType(
    {
        **PRE_VARIABLES,
        "prompt_tokens": VarType.INT,
        "completion_tokens": VarType.INT,
        "total_tokens": VarType.INT,
        "cached_tokens": VarType.INT,
        "reasoning_tokens": VarType.INT,
        "latency_ms": VarType.INT,
        "response_size_bytes": VarType.INT,
        "status_code": VarType.INT,
        "cost_usd": VarType.DOUBLE,
    }
)


def variables_for(phase: Phase) -> Mapping[str, VarType]:
    """Variables an expression of this phase may use (post includes all pre ones)."""
    return PRE_VARIABLES if phase is Phase.PRE else POST_VARIABLES


class CelCompileError(ValueError):
    """The expression is invalid: syntax, unknown variable, type error or not a bool.

    ``line`` and ``column`` are 1-based positions in the source.
    """

    def __init__(self, message: str, *, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


class CelEvaluationError(Exception):
    """Evaluation failed at run time (division by zero, missing variable, overflow)."""


class CompiledExpression(Protocol):
    """A checked expression, immutable and safe to share between requests and tasks.

    ``evaluate`` takes the phase's variables by name (extra names are ignored, names the
    expression uses must be present) and returns the boolean result, or raises
    ``CelEvaluationError``; whether that allows or denies is the policy layer's choice.
    """

    @property
    def source(self) -> str: ...

    def evaluate(self, variables: Mapping[str, object]) -> bool: ...
