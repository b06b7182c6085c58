"""The shipped Lua capture (response_capture.lua) in a real Envoy: what its access log
line says about bodies of every shape, whole and cut by the client.

Envoy runs the script exactly as rendered (`capture_lua`) in front of a small HTTP/1.1
upstream that writes the body in the chunks a test names, a few ms apart (so Envoy sees
them one by one), and writes the product's access log `FORMAT`; the line is read back
with `LogEntry`, as the sidecar reads it.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from policy_sidecar.cli.launcher import envoy_binary, free_port
from policy_sidecar.envoy.access_log import FORMAT, LogEntry, capture_lua

HEAD, TAIL, EVERY = 2048, 4096, 16
# Bodies by name: the chunks the upstream writes.
BODIES: dict[str, list[bytes]] = {}


def sse(i: int, size: int) -> bytes:
    """One SSE event of about ``size`` bytes, numbered so every offset is distinct."""
    text = (f"{i:05d}-" * (size // 6 + 1))[: max(size - 8, 1)]
    return f"data: {text}\n\n".encode()


def register(name: str, chunks: list[bytes]) -> list[bytes]:
    BODIES[name] = chunks
    return chunks


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        chunks = BODIES[self.path.strip("/")]
        delay = float(self.headers.get("x-chunk-delay", "0.003"))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # Envoy reset the upstream request: the client went away

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Gateway:
    url: str
    log: Path

    def entries(self, count: int, timeout: float = 10.0) -> list[LogEntry]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.log.read_bytes().splitlines() if self.log.exists() else []
            if len(lines) >= count:
                return [LogEntry.from_line(line) for line in lines]
            time.sleep(0.05)
        raise AssertionError(f"{count} access log lines expected in {timeout}s")


def envoy_config(port: int, admin: int, upstream: int, log: Path) -> dict[str, object]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "t",
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": str(log),
                    "log_format": {"json_format": FORMAT},
                },
            }
        ],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "t",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "capture",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": capture_lua()},
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }

    def address(p: int) -> dict[str, object]:
        return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

    return {
        "admin": {"address": address(admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": address(port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "up",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "up",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": address(upstream)}}]}
                        ],
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("capture")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port, admin, log = free_port(), free_port(), tmp / "access.log"
    config = tmp / "envoy.json"
    config.write_text(json.dumps(envoy_config(port, admin, server.server_address[1], log)))
    envoy_log = (tmp / "envoy.log").open("w")
    envoy = subprocess.Popen(
        [
            envoy_binary(),
            "-c",
            str(config),
            "--concurrency",
            "1",
            "-l",
            "warning",
            "--base-id",
            str(free_port()),
            "--file-flush-min-size-kb",
            "0",
            "--file-flush-interval-msec",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=envoy_log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert envoy.poll() is None, (tmp / "envoy.log").read_text()
            assert time.monotonic() < deadline, "Envoy not ready"
            time.sleep(0.05)
        yield Gateway(f"http://127.0.0.1:{port}", log)
    finally:
        envoy.terminate()
        envoy.wait(timeout=15)
        envoy_log.close()
        server.shutdown()
        server.server_close()


def fetch(gateway: Gateway, name: str) -> bytes:
    with urllib.request.urlopen(f"{gateway.url}/{name}", timeout=30) as r:
        return bytes(r.read())


def whole_body_checks(entry: LogEntry, data: bytes, chunks: int) -> None:
    capture = entry.capture
    assert capture is not None
    assert capture.ended
    assert capture.size == len(data) == entry.bytes_sent
    # A body the tail holds whole is logged once: the head is left out.
    assert capture.head == (data[:HEAD] if len(data) > TAIL else b"")
    assert capture.tail == data[-TAIL:]
    # Envoy may join chunks that arrive together, never split one it got whole.
    assert 1 <= capture.chunks <= chunks
    assert capture.first_byte_at is not None
    assert entry.started_at - 1 <= capture.first_byte_at <= entry.ended_at + 1
    if len(data) <= HEAD + TAIL:
        assert capture.whole() == data


CASES = {
    # One small JSON-like body.
    "small": [b'{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5}}'],
    # Many small events: the tail is made of many chunks, saved every EVERY.
    "many": [sse(i, 40 + (i * 37) % 200) for i in range(300)],
    # A first chunk larger than the head, then small ones.
    "big-first": [sse(0, 3000)] + [sse(i, 90) for i in range(1, 80)],
    # Chunks larger than the tail among small ones, and one at the very end.
    "big-chunks": [
        sse(i, 9000 if i % 25 == 7 else 5000 if i % 25 == 19 else 120) for i in range(60)
    ]
    + [sse(60, 4500)],
    # Exactly the head and the tail, in chunks that end on their edges.
    "edges": [sse(0, HEAD), sse(1, TAIL), sse(2, 1)],
    # Larger than the head, held whole by the tail: logged once, as the tail.
    "tail-whole": [sse(i, 500) for i in range(6)],
    # The tail's size exactly (still once), and one byte more (head and tail).
    "tail-exact": [sse(0, TAIL)],
    "tail-plus-one": [sse(0, TAIL), b"x"],
    # A body of EVERY chunks exactly: saved at the last chunk and at the end.
    "every": [sse(i, 300) for i in range(EVERY)],
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_capture_holds_the_head_the_tail_and_the_counts_of_a_whole_body(
    gateway: Gateway, name: str
) -> None:
    chunks = register(name, CASES[name])
    before = len(gateway.entries(0))
    data = fetch(gateway, name)
    assert data == b"".join(chunks)
    entry = gateway.entries(before + 1)[before]
    whole_body_checks(entry, data, len(chunks))


def test_an_empty_body_leaves_an_empty_ended_capture(gateway: Gateway) -> None:
    register("empty", [])
    before = len(gateway.entries(0))
    assert fetch(gateway, "empty") == b""
    capture = gateway.entries(before + 1)[before].capture
    assert capture is not None
    assert (capture.head, capture.tail, capture.size, capture.chunks) == (b"", b"", 0, 0)
    assert capture.ended and capture.first_byte_at is None


def test_a_stream_the_client_cuts_leaves_what_was_saved_of_what_it_delivered(
    gateway: Gateway,
) -> None:
    """The client goes away mid-stream: the line has the last save (every EVERY chunks),
    and what it holds is a prefix of what was sent, head and tail both consistent."""
    chunks = register("cut", [sse(i, 150 + (i * 53) % 300) for i in range(400)])
    data = b"".join(chunks)
    before = len(gateway.entries(0))
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"GET /cut HTTP/1.1\r\nhost: t\r\nx-chunk-delay: 0.005\r\n\r\n")
        got = b""
        while len(got) < 30_000:  # about 100 chunks in
            piece = conn.recv(65536)
            assert piece
            got += piece
    entry = gateway.entries(before + 1)[before]
    capture = entry.capture
    assert capture is not None
    assert entry.client_cut
    assert not capture.ended
    assert capture.chunks >= EVERY and capture.chunks % EVERY == 0
    assert 30_000 - 2 * 300 * EVERY < capture.size < len(data)
    assert capture.size <= entry.bytes_sent
    sent = data[: capture.size]
    assert capture.head == sent[:HEAD]
    assert capture.tail == sent[-TAIL:]
