"""Label values that come from requests are bounded per process."""

from __future__ import annotations

import dataclasses

import pytest

from policy_sidecar.observability import metrics
from tests.usage.helpers import rec


def _models_labelled(provider: str) -> set[str]:
    return {
        sample.labels["model"]
        for family in metrics.REQUESTS.collect()
        for sample in family.samples
        if sample.labels.get("provider") == provider
    }


def test_client_chosen_model_names_cannot_grow_the_exposition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "MAX_LABEL_VALUES", 3)
    monkeypatch.setattr(metrics, "_seen_labels", {})
    monkeypatch.setattr(metrics, "DETAILED", True)
    provider = "label-bound-test"
    for i in range(50):
        record = dataclasses.replace(
            rec(i), provider=provider, requested_model=f"CARD-model-{i}", decision="deny"
        )
        metrics.observe_record(record)
    # the first names seen keep their own series; every later one shares "other"
    assert _models_labelled(provider) == {
        "CARD-model-0",
        "CARD-model-1",
        "CARD-model-2",
        "other",
    }
    # a name already labelled keeps its label after the cap is reached
    metrics.observe_record(
        dataclasses.replace(rec(99), provider=provider, requested_model="CARD-model-1")
    )
    assert "CARD-model-1" in _models_labelled(provider)
