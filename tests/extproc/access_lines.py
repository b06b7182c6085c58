"""Access log lines as Envoy writes them (envoy.access_log.FORMAT), for the usage tests.

`capture` does what response_capture.lua does with the body chunks: the first HEAD and
the last TAIL bytes, base64, the chunk and byte counts, the first byte's time (ms) and
whether the body ended.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from policy_sidecar.envoy.access_log import LogEntry

HEAD, TAIL = 2048, 4096


def capture(
    chunks: Sequence[bytes],
    *,
    ended: bool = True,
    first_byte_at: float | None = None,
    head: int = HEAD,
    tail: int = TAIL,
) -> dict[str, Any]:
    data = b"".join(chunks)
    out: dict[str, Any] = {
        "h": base64.b64encode(data[:head]).decode(),
        "t": base64.b64encode(data[-tail:] if data else b"").decode(),
        "n": sum(1 for c in chunks if c),
        "b": len(data),
    }
    if first_byte_at is not None:
        out["f"] = int(first_byte_at * 1000)
    if ended:
        out["e"] = True
    return out


def line(
    metadata: dict[str, Any] | None,
    *,
    status: int = 200,
    content_type: str = "application/json",
    chunks: Sequence[bytes] = (),
    ended: bool = True,
    started_at: float = 1_700_000_000.0,
    duration_ms: int = 5,
    first_byte_at: float | None = None,
    request_id: str | None = "rid-9",
    error: str | None = None,
    details: str | None = None,
    flags: str = "-",
    encoding: str | None = None,
    lua: bool = True,
    account: str | None = None,
) -> bytes:
    raw = {
        "id": request_id,
        "start": f"{started_at:.6f}",
        "ps": metadata,
        "r": capture(chunks, ended=ended, first_byte_at=first_byte_at) if lua else None,
        "code": status,
        "flags": flags,
        "sent": sum(len(c) for c in chunks),
        "dur": duration_ms,
        "err": error,
        # Envoy's response code details: an error header with "via_upstream" is the
        # provider's, not Envoy's.
        "det": details or ("via_upstream" if error is None else "local_reply"),
        "ct": content_type or None,
        "ce": encoding,
        # Envoy writes null when the upstream host has no such metadata (or no host).
        "acct": account,
    }
    return json.dumps(raw).encode()


def entry(metadata: dict[str, Any] | None, **kw: Any) -> LogEntry:
    return LogEntry.from_line(line(metadata, **kw))
