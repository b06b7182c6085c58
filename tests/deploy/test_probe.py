"""deploy/docker/probe.py, the healthcheck and preStop helper baked into the image."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from policy_sidecar.cli.ports import free_port

from . import contract


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_probe", contract.PROBE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path))
        status = 503 if self.path.startswith("/down") else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port() -> int:
    return free_port()


def test_http_get_and_post(probe: ModuleType, http_url: str) -> None:
    _Handler.seen.clear()
    assert probe.main(["get", f"{http_url}/ready"]) == 0
    assert probe.main(["post", f"{http_url}/drain_listeners?graceful"]) == 0
    assert probe.main(["get", f"{http_url}/down"]) == 1
    assert _Handler.seen == [
        ("GET", "/ready"),
        ("POST", "/drain_listeners?graceful"),
        ("GET", "/down"),
    ]


def test_nothing_listening_is_unhealthy(probe: ModuleType) -> None:
    port = _closed_port()
    assert probe.main(["get", f"http://127.0.0.1:{port}/ready"]) == 1
    assert probe.main(["grpc", f"127.0.0.1:{port}"]) == 1


def test_bad_usage(probe: ModuleType) -> None:
    assert probe.main([]) == 2
    assert probe.main(["tcp", "x"]) == 2


def test_grpc_health(probe: ModuleType) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert probe.main(["grpc", f"127.0.0.1:{port}"]) == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert probe.main(["grpc", f"127.0.0.1:{port}"]) == 1
    finally:
        server.stop(None).wait()
