"""Cost of a request from its model deployment's prices. Pure; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from policy_sidecar.catalog import ModelDeployment
from policy_sidecar.usage.record import UsageRecord

__all__ = ["CostCalculator", "Pricing"]

_PER_MILLION = 1_000_000.0


@dataclass(frozen=True, slots=True)
class CostCalculator:
    """Prices in USD per million tokens, as on `ModelDeployment`.

    cost = (prompt - cached) * input + cached * cached_input + completion * output.
    Cached tokens are part of the prompt (the OpenAI convention the usage parsers
    normalise to), so they are clamped to the prompt count: a provider reporting
    more cached than prompt tokens is never billed a negative amount.
    """

    input_per_mtok: float
    cached_input_per_mtok: float
    output_per_mtok: float

    @classmethod
    def for_deployment(cls, model: ModelDeployment) -> CostCalculator:
        return cls(
            model.input_price_per_mtok,
            model.cached_input_price_per_mtok,
            model.output_price_per_mtok,
        )

    def cost(self, *, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        prompt = max(prompt_tokens, 0)
        cached = min(max(cached_tokens, 0), prompt)
        completion = max(completion_tokens, 0)
        return (
            (prompt - cached) * self.input_per_mtok
            + cached * self.cached_input_per_mtok
            + completion * self.output_per_mtok
        ) / _PER_MILLION


class Pricing:
    """Finds the price of a record's model and fills in `cost_usd`.

    Lookup order: the requested model (the deployment name callers use, which is
    what the platform team priced), then the served model by deployment name, then
    the served model by upstream model name when exactly one deployment has it. A
    record whose model is unknown keeps ``cost_usd = None`` (unknown, not free).
    Immutable after construction; safe to share.
    """

    def __init__(self, models: Mapping[str, ModelDeployment]) -> None:
        self._by_name = {name: CostCalculator.for_deployment(m) for name, m in models.items()}
        upstream: dict[str, list[CostCalculator]] = {}
        for m in models.values():
            upstream.setdefault(m.upstream_model, []).append(CostCalculator.for_deployment(m))
        self._by_upstream = {name: c[0] for name, c in upstream.items() if len(set(c)) == 1}

    def calculator(self, record: UsageRecord) -> CostCalculator | None:
        for name in (record.requested_model, record.served_model):
            if name is not None and name in self._by_name:
                return self._by_name[name]
        if record.served_model is not None:
            return self._by_upstream.get(record.served_model)
        return None

    def apply(self, record: UsageRecord) -> UsageRecord:
        """`record` with `cost_usd` set, or unchanged when it has one or no price is known."""
        if record.cost_usd is not None:
            return record
        calc = self.calculator(record)
        if calc is None:
            return record
        cost = calc.cost(
            prompt_tokens=record.prompt_tokens,
            cached_tokens=record.cached_tokens,
            completion_tokens=record.completion_tokens,
        )
        return replace(record, cost_usd=cost)
