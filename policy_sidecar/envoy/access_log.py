"""The access log line Envoy writes for every request: the usage record's source.

One JSON line per request (`FORMAT`), in one file per sidecar worker: a line goes to the
file of the worker whose policy stream handled the request (the ``w`` the policy filter
puts in its metadata), and a request no worker handled (Envoy answered it itself) to
the first worker's file. Each worker reads its own file (`usage.tailer`). See
docs/envoy.md, "Usage capture".
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.providers import fastjson

__all__ = [
    "CAPTURE_NAMESPACE",
    "FORMAT",
    "WORKER_KEY",
    "Capture",
    "LogEntry",
    "LogLineError",
    "access_logs_yaml",
    "capture_lua",
    "log_path",
]

# Where the Lua filter stores what it saw of the response (response_capture.lua).
CAPTURE_NAMESPACE = "policy_sidecar.response"
# The policy filter's metadata key naming the worker (its port) that handled a request.
WORKER_KEY = "w"
# Lines longer than this are skipped (the capture is a few KB; the metadata is small).
MAX_LINE_BYTES = 256 * 1024

FORMAT: dict[str, str] = {
    "id": "%REQ(X-REQUEST-ID)%",
    "start": "%START_TIME(%s.%6f)%",
    "ps": "%DYNAMIC_METADATA(policy_sidecar)%",
    "r": f"%DYNAMIC_METADATA({CAPTURE_NAMESPACE})%",
    "code": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "sent": "%BYTES_SENT%",
    "dur": "%DURATION%",
    "err": f"%RESP({ERROR_HEADER.upper()})%",
    # "via_upstream" for an answer the provider sent: only Envoy's own replies may name
    # an error cause (a provider's x-policy-sidecar-* headers are also removed by an
    # upstream filter, `envoy.upstreams.strip_internal_headers`).
    "det": "%RESPONSE_CODE_DETAILS%",
    "ct": "%RESP(CONTENT-TYPE)%",
    "ce": "%RESP(CONTENT-ENCODING)%",
    # The provider account of the host that answered (its endpoint metadata; for a
    # fallback group, the last attempt's): "-" when no account cluster served it.
    "acct": "%UPSTREAM_METADATA(policy_sidecar:account)%",
}


def log_path(directory: str | Path, port: int) -> Path:
    """The access log file of the worker listening on ``port``."""
    return Path(directory) / f"access-{port}.log"


def capture_lua() -> str:
    return resources.files(__package__).joinpath("response_capture.lua").read_text()


def access_logs_yaml(directory: str, ports: tuple[int, ...], *, indent: int) -> str:
    """The HTTP connection manager's ``access_log`` list: one file per worker port."""
    logs = []
    for i, port in enumerate(ports):
        logs.append(
            {
                "name": "envoy.access_loggers.file",
                "filter": {
                    "metadata_filter": {
                        "matcher": {
                            "filter": "policy_sidecar",
                            "path": [{"key": WORKER_KEY}],
                            "value": {"string_match": {"exact": str(port)}},
                        },
                        # The first worker also takes the lines no worker handled.
                        "match_if_key_not_found": i == 0,
                    }
                },
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": str(log_path(directory, port)),
                    "log_format": {"json_format": FORMAT},
                },
            }
        )
    pad = " " * indent
    # JSON is YAML: one flow mapping per list item.
    return "\n".join(f"{pad}- {json.dumps(entry)}" for entry in logs)


class LogLineError(ValueError):
    """A line that is not an access log entry of ours (the message names no content)."""


@dataclass(frozen=True, slots=True)
class Capture:
    """What the Lua filter saw of the response body."""

    head: bytes
    tail: bytes
    size: int  # body bytes seen
    chunks: int
    first_byte_at: float | None  # epoch seconds
    ended: bool  # the body ended (not cut)

    def whole(self) -> bytes | None:
        """The whole body when head and tail cover it, else None."""
        if len(self.tail) >= self.size:
            return self.tail[len(self.tail) - self.size :]
        overlap = len(self.head) + len(self.tail) - self.size
        if overlap < 0 or overlap > len(self.tail):
            return None
        return self.head + self.tail[overlap:]


UPSTREAM_DETAILS = "via_upstream"


def _own_error(raw: Mapping[str, Any]) -> str | None:
    """The cause of an error Envoy answered itself (its local_reply_config names it in
    the error header); None for whatever the provider answered, header or not."""
    if _str(raw.get("det")) == UPSTREAM_DETAILS:
        return None
    return (_str(raw.get("err")) or "")[:64] or None


@dataclass(frozen=True, slots=True)
class LogEntry:
    request_id: str | None
    started_at: float  # epoch seconds
    ended_at: float
    metadata: dict[str, Any]  # the policy filter's namespace; empty if it set none
    capture: Capture | None
    status: int  # 0: no response started
    flags: str
    bytes_sent: int
    envoy_error: str | None
    content_type: str
    content_encoding: str | None
    # The provider account that answered (upstream host metadata); None: no account.
    upstream_account: str | None = None

    @classmethod
    def from_line(cls, line: bytes) -> LogEntry:
        if len(line) > MAX_LINE_BYTES:
            raise LogLineError(f"line of {len(line)} bytes, over {MAX_LINE_BYTES}")
        try:
            raw = fastjson.loads(line)
        except (ValueError, RecursionError) as exc:
            raise LogLineError("not JSON") from exc
        if not isinstance(raw, dict):
            raise LogLineError("not a JSON object")
        try:
            started = float(raw["start"])
            duration = _int(raw.get("dur"))
            metadata = raw.get("ps") or {}
            if not isinstance(metadata, dict):
                raise LogLineError("policy metadata is not an object")
            return cls(
                request_id=_str(raw.get("id")),
                started_at=started,
                ended_at=started + duration / 1000.0,
                metadata=metadata,
                capture=_capture(raw.get("r")),
                status=_int(raw.get("code")),
                flags=_str(raw.get("flags")) or "",
                bytes_sent=_int(raw.get("sent")),
                envoy_error=_own_error(raw),
                content_type=_str(raw.get("ct")) or "",
                content_encoding=_str(raw.get("ce")),
                upstream_account=(_str(raw.get("acct")) or "")[:64] or None,
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            if isinstance(exc, LogLineError):
                raise
            raise LogLineError(f"malformed field ({type(exc).__name__})") from exc

    @property
    def client_cut(self) -> bool:
        """The client went away before the response ended (Envoy's ``DC`` flag)."""
        return "DC" in self.flags.split(",")


def _str(value: Any) -> str | None:
    if value is None or value == "-":
        return None
    return str(value)


def _int(value: Any) -> int:
    if value is None or value == "-":
        return 0
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("not a count")
    return int(number)


_a2b = binascii.a2b_base64


def _capture(raw: Any) -> Capture | None:
    if not isinstance(raw, dict):
        return None
    first = raw.get("f")
    return Capture(
        # What base64.b64decode(…, validate=True) does, without its wrapping.
        head=_a2b(raw.get("h") or "", strict_mode=True),
        tail=_a2b(raw.get("t") or "", strict_mode=True),
        size=_int(raw.get("b")),
        chunks=_int(raw.get("n")),
        first_byte_at=float(first) / 1000.0 if isinstance(first, int | float) else None,
        ended=raw.get("e") is True,
    )
