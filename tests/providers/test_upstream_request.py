"""The deployment's path and model: Azure deployment and v1 paths, Gemini's model in the
path, the upstream model in the body, and no re-encoding of a body that does not change."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy_sidecar.catalog.deployments import ModelDeployment, azure_problems
from policy_sidecar.providers.base import Route
from policy_sidecar.providers.registry import default_registry
from policy_sidecar.providers.upstream_request import UpstreamRequest, same_api, upstream_request

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def route(method: str, path: str) -> Route:
    matched = default_registry().match(method, path)
    assert matched is not None, path
    return matched[1]


def plan(
    deployment: ModelDeployment, path: str, body: dict[str, Any], **patch: Any
) -> UpstreamRequest:
    return upstream_request(deployment, route("POST", path), path, body, patch or None)


def azure(**fields: Any) -> ModelDeployment:
    return ModelDeployment(name="gpt-4o", provider="azure", upstream_model="gpt-4o", **fields)


def test_the_upstream_model_replaces_the_clients_in_the_body() -> None:
    deployment = ModelDeployment("gpt-4o", "openai", "gpt-4o-2024-08-06")
    out = plan(deployment, "/v1/chat/completions", CHAT)
    assert out.path is None
    assert out.body is not None
    assert json.loads(out.body) == {**CHAT, "model": "gpt-4o-2024-08-06"}


def test_a_body_that_does_not_change_is_not_re_encoded() -> None:
    deployment = ModelDeployment("gpt-4o", "openai", "gpt-4o")
    assert plan(deployment, "/v1/chat/completions", CHAT) == UpstreamRequest()
    # A patch already in the body changes nothing either.
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    patched = plan(deployment, "/v1/chat/completions", body, stream_options={"include_usage": True})
    assert patched == UpstreamRequest()


def test_without_a_deployment_only_the_patch_applies() -> None:
    path = "/v1/chat/completions"
    out = upstream_request(None, route("POST", path), path, CHAT, {"stream_options": {"x": 1}})
    assert out.path is None and out.body is not None
    assert json.loads(out.body) == {**CHAT, "stream_options": {"x": 1}}


def test_an_openai_call_goes_to_the_azure_deployment_path_with_its_api_version() -> None:
    deployment = azure(azure_deployment="gpt4o-eu", api_version="2024-10-21")
    out = plan(deployment, "/v1/chat/completions", CHAT)
    assert out.path == "/openai/deployments/gpt4o-eu/chat/completions?api-version=2024-10-21"
    assert out.body is None  # Azure reads the deployment from the path
    embeddings = plan(deployment, "/v1/embeddings", {"model": "gpt-4o", "input": "x"})
    assert embeddings.path == "/openai/deployments/gpt4o-eu/embeddings?api-version=2024-10-21"


def test_the_deployments_api_version_replaces_the_clients() -> None:
    deployment = azure(azure_deployment="gpt4o-eu", api_version="2024-10-21")
    path = "/openai/deployments/gpt-4o/chat/completions?foo=1&api-version=2023-05-15"
    out = plan(deployment, path, {"messages": CHAT["messages"]})
    assert out.path == "/openai/deployments/gpt4o-eu/chat/completions?foo=1&api-version=2024-10-21"


def test_an_azure_deployment_path_keeps_the_clients_version_when_the_deployment_has_none() -> None:
    deployment = azure(azure_deployment="gpt4o-eu")
    path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"
    out = plan(deployment, path, {"messages": CHAT["messages"]})
    assert out.path == "/openai/deployments/gpt4o-eu/chat/completions?api-version=2024-06-01"
    # Already the deployment's name: nothing to change.
    same = azure()
    assert plan(same, path, {"messages": []}) == UpstreamRequest()


def test_without_an_api_version_an_openai_call_goes_to_azures_v1_path() -> None:
    deployment = azure(azure_deployment="gpt4o-eu")
    out = plan(deployment, "/v1/chat/completions", CHAT)
    assert out.path == "/openai/v1/chat/completions"
    assert out.body is not None
    assert json.loads(out.body)["model"] == "gpt4o-eu"
    # The Responses API is only on the v1 paths, even with an api_version.
    versioned = azure(azure_deployment="gpt4o-eu", api_version="2024-10-21")
    responses = plan(versioned, "/v1/responses", {"model": "gpt-4o", "input": "hi"})
    assert responses.path == "/openai/v1/responses"


def test_azures_own_v1_path_keeps_its_query_and_takes_the_deployment_name() -> None:
    deployment = azure(azure_deployment="gpt4o-eu")
    out = plan(deployment, "/openai/v1/chat/completions?api-version=preview", CHAT)
    assert out.path is None  # already the path it goes to
    assert out.body is not None and json.loads(out.body)["model"] == "gpt4o-eu"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/v1beta/models/flash:generateContent",
            "/v1beta/models/gemini-2.0-flash-001:generateContent",
        ),
        (
            "/v1beta/models/flash:streamGenerateContent?alt=sse",
            "/v1beta/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse",
        ),
        (
            "/v1/models/flash%3AembedContent",
            "/v1/models/gemini-2.0-flash-001:embedContent",
        ),
    ],
)
def test_gemini_gets_the_upstream_model_in_the_path(path: str, expected: str) -> None:
    deployment = ModelDeployment("flash", "gemini", "gemini-2.0-flash-001")
    body: dict[str, Any] = {"contents": [{"parts": [{"text": "hi"}]}]}
    if "embed" in path:
        body = {"content": {"parts": [{"text": "hi"}]}}
    assert plan(deployment, path, body) == UpstreamRequest(path=expected)


def test_a_gemini_model_already_upstream_keeps_the_clients_path() -> None:
    deployment = ModelDeployment("gemini-2.0-flash", "gemini", "gemini-2.0-flash")
    path = "/v1beta/models/gemini-2.0-flash:generateContent"
    assert plan(deployment, path, {"contents": []}) == UpstreamRequest()


def test_azure_fields_are_checked() -> None:
    assert azure_problems("azure", "gpt4o-eu", "2025-04-01-preview") == []
    assert [f for f, _ in azure_problems("azure", "a/b", "x&y=1")] == [
        "azure_deployment",
        "api_version",
    ]
    assert [f for f, _ in azure_problems("openai", None, "2024-10-21")] == ["api_version"]


def test_the_deployment_name_and_version_are_escaped_whole_in_the_path() -> None:
    """Found by mutation testing: a ``/`` in either must not open a path segment."""
    deployment = azure(azure_deployment="team/gpt 4o", api_version="2024/10")
    path = "/openai/deployments/x/chat/completions?api-version&api-version=1=2&a=b"
    out = plan(deployment, path, CHAT)
    assert out.path == (
        "/openai/deployments/team%2Fgpt%204o/chat/completions?a=b&api-version=2024%2F10"
    )


def test_a_gemini_model_already_upstream_keeps_any_spelling_of_the_path() -> None:
    deployment = ModelDeployment("gemini-2.0-flash", "gemini", "gemini-2.0-flash")
    for path in (
        "/v1beta/models/gemini-2.0-flash%3AgenerateContent",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent/?alt=sse",
    ):
        assert plan(deployment, path, {"contents": []}) == UpstreamRequest()


def test_a_gemini_upstream_model_is_escaped_whole_in_the_path() -> None:
    deployment = ModelDeployment("flash", "gemini", "tuned/flash 1")
    out = plan(deployment, "/v1beta/models/flash:generateContent?alt=sse", {"contents": []})
    assert out == UpstreamRequest(path="/v1beta/models/tuned%2Fflash%201:generateContent?alt=sse")


def test_only_a_gemini_deployment_rewrites_a_gemini_path() -> None:
    deployment = ModelDeployment("flash", "openai", "gpt-4o")
    path = "/v1beta/models/flash:generateContent"
    assert plan(deployment, path, {"contents": []}) == UpstreamRequest()


def test_an_upload_form_keeps_its_bytes_but_the_model() -> None:
    form = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        b"RIFF\r\n--b--\r\n"
    )
    path = "/v1/audio/transcriptions"
    out = upstream_request(
        ModelDeployment("whisper", "openai", "whisper-1"),
        route("POST", path),
        path,
        {"model": "whisper"},
        raw=form,
        content_type="multipart/form-data; boundary=b",
    )
    assert out == UpstreamRequest(body=form.replace(b"\r\nwhisper\r\n", b"\r\nwhisper-1\r\n"))


@pytest.mark.parametrize(
    ("route_provider", "deployment_provider", "same"),
    [
        ("openai", "openai", True),
        ("gemini", "gemini", True),
        ("openai", "azure", True),
        ("azure", "openai", True),
        ("gemini", "openai", False),
        ("openai", "anthropic", False),
        ("azure", "cohere", False),
    ],
)
def test_which_deployments_a_route_can_reach(
    route_provider: str, deployment_provider: str, same: bool
) -> None:
    assert same_api(route_provider, deployment_provider) is same
