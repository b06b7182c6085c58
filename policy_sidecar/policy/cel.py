"""CEL expressions for ``custom_cel`` policies: compile and type-check once, evaluate fast.

Two engines share one contract (``cel_contract``): ``cel-expr`` (the official CEL C++
runtime through ``cel-expr-python``, with the real type checker; the default) and
``cel-python`` (pure-Python ``celpy``, no checker: see ``cel_engines`` for what it cannot
catch).
"""

from __future__ import annotations

from policy_sidecar.policy.cel_contract import (
    DEFAULT_ENGINE,
    POST_VARIABLES,
    PRE_VARIABLES,
    CelCompileError,
    CelEvaluationError,
    CompiledExpression,
    EngineName,
    Phase,
    VarType,
    variables_for,
)
from policy_sidecar.policy.cel_engines import engine_for

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
    "compile_expression",
    "variables_for",
]


def compile_expression(
    source: str, phase: Phase | str, *, engine: EngineName = DEFAULT_ENGINE
) -> CompiledExpression:
    """Parse and type-check ``source`` once; it must evaluate to bool.

    Raises ``CelCompileError`` with the message and position of the first problem.
    """
    if not source.strip():
        raise CelCompileError("expression is empty")
    return engine_for(engine, Phase(phase)).compile(source)
