"""Micro-benchmark: microseconds per CEL evaluation, for both engines.

Run: PYTHONPATH=. python bench/cel_eval.py [--number N] [--repeat R]
Prints the best of R runs of N evaluations (compile time excluded).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Mapping
from functools import partial

from cel_expr_python import cel

from policy_sidecar.policy.cel import EngineName, Phase, compile_expression

CASES: list[tuple[str, Phase, str]] = [
    ("pre-simple", Phase.PRE, "estimated_tokens < 4000"),
    (
        "pre-typical",
        Phase.PRE,
        'model.startsWith("gpt-4o") && estimated_tokens < 4000 && environment == "prod"',
    ),
    (
        "post-typical",
        Phase.POST,
        "total_tokens <= 8000 && (cost_usd < 0.5 || status_code >= 500) && latency_ms < 30000",
    ),
]

VARIABLES: Mapping[str, object] = {
    "request_size_bytes": 2048,
    "estimated_tokens": 1500,
    "model": "gpt-4o-mini",
    "org_id": "org-1",
    "app_id": "app-1",
    "environment": "prod",
    "provider": "openai",
    "stream": True,
    "max_tokens": 512,
    "prompt_tokens": 1400,
    "completion_tokens": 300,
    "total_tokens": 1700,
    "cached_tokens": 1024,
    "reasoning_tokens": 0,
    "latency_ms": 850,
    "response_size_bytes": 9000,
    "status_code": 200,
    "cost_usd": 0.0123,
}

ENGINES: dict[EngineName, int] = {"cel-expr": 1, "cel-python": 50}  # cel-python is slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000, help="evaluations per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'engine':<11} {'case':<13} {'us/eval':>9}")
    for engine, divisor in ENGINES.items():
        for name, phase, source in CASES:
            compiled = compile_expression(source, phase, engine=engine)
            assert compiled.evaluate(VARIABLES) in (True, False)
            number = max(1, args.number // divisor)
            timer = timeit.Timer(partial(compiled.evaluate, VARIABLES))
            best = min(timer.repeat(number=number, repeat=args.repeat))
            print(f"{engine:<11} {name:<13} {best / number * 1e6:>9.2f}")
    raw_baseline(args.number, args.repeat)


def raw_baseline(number: int, repeat: int) -> None:
    """The binding alone, minimal input dict: what the wrapper adds is the difference."""
    env = cel.NewEnv(variables={"estimated_tokens": cel.Type.INT})
    expr = env.compile("estimated_tokens < 4000")
    data = {"estimated_tokens": 1500}
    timer = timeit.Timer(lambda: expr.eval(data=data).value())
    best = min(timer.repeat(number=number, repeat=repeat))
    print(f"{'raw binding':<11} {'pre-simple':<13} {best / number * 1e6:>9.2f}")


if __name__ == "__main__":
    main()
