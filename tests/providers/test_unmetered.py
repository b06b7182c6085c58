"""Known endpoints that are not metered yet: every spelling is refused, nothing else."""

from __future__ import annotations

import pytest

from policy_sidecar.providers.registry import default_registry
from policy_sidecar.providers.unmetered import not_metered


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/v1/realtime", "Realtime"),
        ("/v1/realtime?model=gpt-realtime", "Realtime"),
        ("/v1/realtime/sessions", "Realtime"),
        ("/v1/realtime/client_secrets", "Realtime"),
        ("/v1/realtime/calls", "Realtime"),
        ("/openai/realtime?api-version=2025-04-01-preview&deployment=x", "Realtime"),
        ("/openai/v1/realtime", "Realtime"),
        ("/v1/batches", "batch"),
        ("/v1/batches/batch_abc/cancel", "batch"),
        ("/V1/Batches/", "batch"),
        ("/v1//batches", "batch"),
        ("/v1/%62atches", "batch"),
        ("/v1;x/batches", "batch"),
        ("/openai/batches", "batch"),
        ("/openai/v1/batches/b1", "batch"),
        ("/v1/messages/batches", "batch"),
        ("/v1/messages/batches/msgbatch_1/results", "batch"),
        ("/v1beta/models/gemini-2.0-flash:batchGenerateContent", "batch"),
        ("/v1beta/models/gemini-2.0-flash%3AbatchGenerateContent", "batch"),
        ("/v1beta/models/text-embedding-004:asyncBatchEmbedContent", "batch"),
        ("/v1beta/batches/b1", "batch"),
        ("/v1/files", "file"),
        ("/v1/files/file-1/content", "file"),
        ("/v1/uploads/u1/parts", "file"),
        ("/openai/files", "file"),
        ("/upload/v1beta/files", "file"),
        ("/v1beta/files/f1", "file"),
    ],
)
def test_known_unmetered_endpoints_are_refused_in_any_spelling(path: str, word: str) -> None:
    reason = not_metered(path)
    assert reason is not None, path
    assert word in reason and "not metered" in reason


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/models",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        "/v1/batchesx",
        "/v1/filesystem",
        "/v2/embed",
    ],
)
def test_other_paths_are_not_refused_as_unmetered(path: str) -> None:
    assert not_metered(path) is None


def test_a_websocket_upgrade_is_refused_on_any_path() -> None:
    upgrade = {"connection": "Upgrade", "upgrade": "websocket"}
    assert default_registry().match("POST", "/v1/responses") is not None
    reason = not_metered("/v1/responses", upgrade)
    assert reason is not None and "WebSocket" in reason
    assert not_metered("/v1/responses", {"upgrade": "h2c"}) is None


def test_no_unmetered_pattern_shadows_a_metered_route() -> None:
    registry = default_registry()
    for path in ("/v1/batches", "/v1/files", "/v1/realtime", "/v1/messages/batches"):
        assert registry.match("POST", path) is None


def test_the_answer_is_the_same_asked_again_and_for_paths_too_long_to_remember() -> None:
    long_tail = "/x" * 400  # canonical path over the remembered length
    for _ in range(2):
        assert not_metered("/v1/batches") is not None
        assert not_metered("/v1/chat/completions") is None
        assert not_metered("/v1/files" + long_tail) is not None
        assert not_metered("/v1/chat/completions" + long_tail) is None
        reason = not_metered("/v1/batches", {"upgrade": "websocket"})
        assert reason is not None and "WebSocket" in reason
