"""Requests in shapes ordinary clients never send, frame by frame: HTTP/2 with trailers
and no DATA, an empty DATA frame, HTTP/1.1 chunked with trailers. For the edge tests
that check no shape of request reaches the provider without a policy decision."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int | None  # None: the stream was reset or the connection closed
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def error_code(self) -> str | None:
        try:
            payload: Any = json.loads(self.body)
        except ValueError:
            return None
        error = payload.get("error") if isinstance(payload, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return str(code) if code is not None else None


def h2_request(
    port: int,
    headers: Headers,
    *,
    data: Sequence[bytes] = (),
    trailers: Headers | None = None,
    end_with_empty_data: bool = False,
    timeout: float = 10.0,
) -> Reply:
    """One HTTP/2 (prior knowledge) request: ``headers`` (pseudo-headers first), each of
    ``data`` as one DATA frame, then ``trailers`` or an empty DATA frame ending the
    stream. Without ``data``, ``trailers`` or ``end_with_empty_data`` the headers end
    the stream."""
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    ends_on_headers = not data and trailers is None and not end_with_empty_data
    conn.send_headers(stream, list(headers), end_stream=ends_on_headers)
    for i, chunk in enumerate(data):
        last = i == len(data) - 1 and trailers is None and not end_with_empty_data
        conn.send_data(stream, chunk, end_stream=last)
    if end_with_empty_data:
        conn.send_data(stream, b"", end_stream=True)
    if trailers is not None:
        conn.send_headers(stream, list(trailers), end_stream=True)
    status: int | None = None
    got: dict[str, str] = {}
    body = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    got = {str(k): str(v) for k, v in event.headers}
                    status = int(got[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
                elif isinstance(event, h2.events.StreamReset):
                    return Reply(None)
            sock.sendall(conn.data_to_send())
    return Reply(status, got, body)


def h1_request(port: int, raw: bytes, *, timeout: float = 10.0) -> Reply:
    """Sends ``raw`` bytes (one HTTP/1.1 request with ``connection: close``) and parses
    the one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)
