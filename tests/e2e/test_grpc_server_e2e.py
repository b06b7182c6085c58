"""Both gRPC servers of the ext_proc port behind the real Envoy (docs/envoy.md, "The
ext_proc port's gRPC server"): the default (``h2``, the sidecar's own) carries every
other e2e test; here ``grpcio`` carries the same requests, and grpcurl, a client of
neither, asks each for its health."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

from policy_sidecar.cli.launcher import Stack, start_stack
from tests.admin.helpers import grpcurl_binary
from tests.e2e.conftest import KEY, usage_records, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["h2", "grpcio"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Stack]]:
    workdir = tmp_path_factory.mktemp(f"server-{request.param}")
    stack = start_stack(
        workdir,
        write_config(workdir),
        sidecar_env={"POLICY_SIDECAR_GRPC_SERVER": request.param},
    )
    try:
        yield request.param, stack
    finally:
        stack.stop()


def health(port: int, protoset: Path, service: str = "") -> subprocess.CompletedProcess[str]:
    """grpcurl's Check, the service described by a protoset (the ext_proc port serves no
    reflection)."""
    return subprocess.run(
        [
            grpcurl_binary(),
            "-plaintext",
            "-protoset",
            str(protoset),
            "-d",
            json.dumps({"service": service}),
            f"127.0.0.1:{port}",
            "grpc.health.v1.Health/Check",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_requests_are_decided_and_recorded(served: tuple[str, Stack]) -> None:
    server, stack = served
    log = (stack.workdir / "sidecar.log").read_text()
    assert f"{server} server" in log
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
    rid = f"e2e-{uuid.uuid4()}"
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello there"}],
        extra_headers={"x-request-id": rid},
    )
    assert reply.usage is not None
    [record] = usage_records(stack, {rid})
    assert (record["decision"], record["status_code"]) == ("allow", 200)
    assert record["prompt_tokens"] == reply.usage.prompt_tokens
    bad = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )


def test_grpcurl_health_check_on_the_ext_proc_port(
    served: tuple[str, Stack], tmp_path: Path
) -> None:
    _, stack = served
    protoset = tmp_path / "health.protoset"
    files = descriptor_pb2.FileDescriptorSet()
    health_pb2.DESCRIPTOR.CopyToProto(files.file.add())
    protoset.write_bytes(files.SerializeToString())
    ok = health(stack.sidecar_ports[0], protoset)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"status": "SERVING"}
    unknown = health(stack.sidecar_ports[0], protoset, "no.such.Service")
    assert unknown.returncode != 0
    assert "NotFound" in unknown.stderr
