"""A small gRPC server for Envoy's ext_proc stream: HTTP/2 cleartext framed on asyncio.

Why not grpc.aio: grpcio's asyncio server runs gRPC's C core on a poller thread and
hands every completion to the event loop under the GIL. At one connection each message
in or out costs 90-220 µs of wall time that is neither ours nor Envoy's (BENCHMARKS.md,
"Where a request's time goes at one connection"). The h2 library, tried first, spends
~235 µs of Python per two-message stream in its state machine. Here the event loop
reads the frames itself: a message is a few Python calls between the socket and the
handler (BENCHMARKS.md, "A gRPC server of our own").

The peer is Envoy's gRPC client (or any gRPC client: the tests use grpcio's and h2's).
What is implemented of HTTP/2 (RFC 9113) is what a server of long-lived gRPC streams
needs: the preface, SETTINGS (and their ACK), HEADERS with CONTINUATION, DATA with
flow control both ways, WINDOW_UPDATE, RST_STREAM, PING, GOAWAY; PRIORITY and unknown
frames are ignored; a broken rule ends the connection with GOAWAY and the RFC's code.
Headers are decoded with ``hpack``. Our SETTINGS ask for a header table of size 0, so
after the first blocks the decoding depends on a block's bytes only and is remembered
by them; our own header blocks are constant literals that never touch a table.

What it serves: bidirectional-streaming and unary methods whose handlers take a
``Stream`` (``await read()`` -> a message or ``EOF``, ``await write(message)``): all of
grpc.aio's context that ``ExternalProcessor`` uses, and ``EOF`` is grpc.aio's. Answered
with a gRPC status instead: compressed messages and unknown methods (UNIMPLEMENTED), a
message over the size limit (RESOURCE_EXHAUSTED), one that does not parse (INTERNAL), a
``grpc-timeout`` that runs out (DEADLINE_EXCEEDED), a handler that raises (UNKNOWN).
Shutdown: the listener closes, each connection gets a GOAWAY, streams already started
finish within the grace period, then whatever is left is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import grpc
import hpack

log = logging.getLogger(__name__)

EOF: Final = grpc.aio.EOF

# gRPC status codes used here.
OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types and flags (RFC 9113 §6).
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0, 1, 2, 3, 4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 5, 6, 7, 8, 9
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20
# Error codes (§7).
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x0, 0x1, 0x3, 0x5
FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x6, 0x7, 0x9
# Settings (§6.5.2).
_S_HEADER_TABLE_SIZE, _S_MAX_CONCURRENT_STREAMS, _S_INITIAL_WINDOW_SIZE = 0x1, 0x3, 0x4
_S_MAX_FRAME_SIZE, _S_MAX_HEADER_LIST_SIZE = 0x5, 0x6

_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65535
# A message may be at most this large: a stream's window is twice it (see H2GrpcServer).
MAX_MESSAGE_LIMIT = _MAX_WINDOW // 2 - 5
# The largest frame we accept (SETTINGS_MAX_FRAME_SIZE): big bodies come in few frames.
_OUR_MAX_FRAME = 1 << 20
_MAX_HEADER_BLOCK = 64 * 1024
_HEADER_CACHE_SIZE = 256
_CACHED_BLOCK_MAX = 1024  # Envoy's blocks are ~100 bytes; larger ones are not remembered
_MAX_STATUS_MESSAGE = 512  # characters of a grpc-message we send


_TIMEOUT_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return (
        (len(payload) << 8 | kind).to_bytes(4, "big")
        + bytes((flags,))
        + stream_id.to_bytes(4, "big")
        + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """A header as a literal without indexing, new name, no Huffman (RFC 7541 §6.2.2)."""
    return b"\x00" + _hpack_string(name) + _hpack_string(value)


def _hpack_string(s: bytes) -> bytes:
    n = len(s)
    if n < 127:
        return bytes((n,)) + s
    out = bytearray((127,))
    n -= 127
    while n >= 128:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + s


# ":status: 200" is the static table's entry 8; content-type is static name 31.
_RESPONSE_BLOCK: Final = b"\x88" + b"\x0f\x10" + _hpack_string(b"application/grpc")
_OK_TRAILERS: Final = _literal(b"grpc-status", b"0")


def percent_encode(text: str) -> bytes:
    """grpc-message's encoding: printable ASCII except '%' as is, the rest %XX."""
    out = bytearray()
    for b in text.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def grpc_timeout(value: str | None) -> float | None:
    """Seconds of a ``grpc-timeout`` header, or None when absent or malformed."""
    if not value:
        return None
    m = _TIMEOUT.fullmatch(value)
    if m is None:
        return None
    return int(m.group(1)) * _TIMEOUT_UNITS[m.group(2)]


class StatusError(Exception):
    """Raised by a handler: the RPC ends with this gRPC status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StreamClosed(Exception):
    """The peer reset the stream, or the connection went away."""


@dataclass(frozen=True, slots=True)
class Method:
    """A method's handler and its message codecs."""

    handler: Callable[[Stream], Awaitable[None]]
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]


class _StreamError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _ConnectionError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class Stream:
    """One RPC: messages in, messages out, then a status."""

    __slots__ = (
        "_closed",
        "_ended",
        "_headers_sent",
        "_messages",
        "_needed",
        "_pending",
        "_reset",
        "_waiter",
        "_window_waiter",
        "conn",
        "id",
        "method",
        "recv_left",
        "released",
        "send_window",
        "task",
        "timed_out",
    )

    def __init__(self, conn: H2Connection, stream_id: int, method: Method) -> None:
        self.conn = conn
        self.id = stream_id
        self.method = method
        self.task: asyncio.Task[None] | None = None
        self.send_window = conn.peer_initial_window
        self.recv_left = conn.server.stream_window  # what the peer may still send
        self.released = 0  # bytes read by the handler since our last WINDOW_UPDATE
        self.timed_out = False
        self._pending = bytearray()  # the start of a message not yet whole
        self._needed = 0
        self._messages: deque[tuple[Any, int]] = deque()  # (message, its framed size)
        self._waiter: asyncio.Future[None] | None = None
        self._window_waiter: asyncio.Future[None] | None = None
        self._ended = False  # the peer sent END_STREAM (or reset)
        self._reset = False
        self._headers_sent = False
        self._closed = False  # we sent our trailers

    # -- the connection's side ----------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Cuts gRPC messages out of DATA; `_StreamError` when the peer broke a rule."""
        pending = self._pending
        buf = _whole(pending, data, self._needed)
        if buf is None:
            return
        limit = self.conn.server.max_message_bytes
        pos = 0
        n = len(buf)
        while n - pos >= 5:
            if buf[pos] != 0:
                raise _StreamError(UNIMPLEMENTED, "compressed messages are not supported")
            length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if length > limit:
                raise _StreamError(
                    RESOURCE_EXHAUSTED, f"a message of {length} bytes is over {limit}"
                )
            end = pos + 5 + length
            if end > n:
                break
            try:
                message = self.method.decode(buf[pos + 5 : end])
            except Exception as exc:  # a message that does not parse
                raise _StreamError(INTERNAL, f"cannot parse a message: {exc}") from exc
            self._messages.append((message, end - pos))
            pos = end
        if pos < n:
            pending += buf[pos:] if pos else buf
            self._needed = 5 + int.from_bytes(pending[1:5], "big") if len(pending) >= 5 else 5
        if self._messages:
            self._wake()

    @property
    def partial(self) -> bool:
        """Whether the start of a message is here and not the rest."""
        return bool(self._pending)

    def credit(self, n: int) -> None:
        """``n`` bytes of this stream are consumed: give them back to the peer when half
        the window is, so it may always send a whole message (the window is twice the
        largest)."""
        self.released += n
        if self.released >= self.conn.server.stream_window // 2 and not self._ended:
            self.conn.write(frame(_WINDOW_UPDATE, 0, self.id, self.released.to_bytes(4, "big")))
            self.recv_left += self.released
            self.released = 0

    def end(self) -> None:
        self._ended = True
        self._wake()

    def reset(self) -> None:
        """The peer reset the stream or the connection is gone."""
        self._reset = True
        self._ended = True
        self._wake()
        self.wake_window()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def wake_window(self) -> None:
        w = self._window_waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- the handler's side -------------------------------------------------------
    async def read(self) -> Any:
        """The next message, or ``EOF`` once the peer has ended its side."""
        while True:
            if self._messages:
                message, size = self._messages.popleft()
                self.credit(size)
                return message
            if self._reset:
                raise StreamClosed("the stream was reset")
            if self._ended:
                return EOF
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def write(self, message: Any) -> None:
        if self._reset or self._closed:
            raise StreamClosed("the stream is closed")
        if self.conn.paused:
            await self.conn.writable()
            if self._reset:
                raise StreamClosed("the stream was reset")
        data = self.method.encode(message)
        framed = b"\x00" + len(data).to_bytes(4, "big") + data
        conn = self.conn
        head = b""
        if not self._headers_sent:
            head = frame(_HEADERS, _END_HEADERS, self.id, _RESPONSE_BLOCK)
            self._headers_sent = True
        size = len(framed)
        if size <= conn.send_window and size <= self.send_window and size <= conn.peer_max_frame:
            conn.send_window -= size
            self.send_window -= size
            conn.write(head + frame(_DATA, 0, self.id, framed))
            return
        if head:
            conn.write(head)
        view = memoryview(framed)
        while view:
            room = min(conn.send_window, self.send_window, conn.peer_max_frame, len(view))
            if room <= 0:
                self._window_waiter = conn.loop.create_future()
                try:
                    await self._window_waiter
                finally:
                    self._window_waiter = None
                if self._reset:
                    raise StreamClosed("the stream was reset")
                continue
            conn.send_window -= room
            self.send_window -= room
            conn.write(frame(_DATA, 0, self.id, bytes(view[:room])))
            view = view[room:]

    def finish(self, status: int, message: str = "", rst_code: int | None = None) -> None:
        """Sends the status as trailers (and ends our interest in the peer's side)."""
        if self._reset or self._closed:
            return
        self._closed = True
        block = b"" if self._headers_sent else _RESPONSE_BLOCK
        if status == OK and not message:
            block += _OK_TRAILERS
        else:
            block += _literal(b"grpc-status", str(status).encode())
            if message:
                if len(message) > _MAX_STATUS_MESSAGE:
                    message = message[: _MAX_STATUS_MESSAGE - 1] + "…"
                block += _literal(b"grpc-message", percent_encode(message))
        out = frame(_HEADERS, _END_STREAM | _END_HEADERS, self.id, block)
        if not self._ended or rst_code is not None:
            # We will read no more of what the peer sends (what gRPC servers do).
            code = NO_ERROR if rst_code is None else rst_code
            out += frame(_RST_STREAM, 0, self.id, code.to_bytes(4, "big"))
        self.conn.write(out)


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection from Envoy: frames in, streams out."""

    def __init__(self, server: H2GrpcServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.send_window = _DEFAULT_WINDOW
        self.peer_initial_window = _DEFAULT_WINDOW
        self.peer_max_frame = 16384
        self.going_away = False
        self.paused = False  # the transport's buffer is full: write nothing more
        self._writable: asyncio.Future[None] | None = None
        self._goaway_sent = False
        self._recv_left = server.connection_window  # what the peer may still send
        self._released = 0  # bytes received since our last connection WINDOW_UPDATE
        self._last_stream = 0
        self._pending = bytearray()  # the start of a frame not yet whole
        self._needed = 0
        self._preface = False
        self._settings_seen = False
        self._continuing: tuple[int, int, bytearray] | None = None
        # The peer may use a header table until it has applied our SETTINGS (size 0).
        self._decoder = hpack.Decoder()
        self._header_cache: dict[bytes, list[tuple[str, str]]] = {}

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        settings = b"".join(
            k.to_bytes(2, "big") + v.to_bytes(4, "big")
            for k, v in (
                (_S_HEADER_TABLE_SIZE, 0),
                (_S_MAX_CONCURRENT_STREAMS, self.server.max_streams),
                (_S_INITIAL_WINDOW_SIZE, self.server.stream_window),
                (_S_MAX_FRAME_SIZE, _OUR_MAX_FRAME),
                (_S_MAX_HEADER_LIST_SIZE, _MAX_HEADER_BLOCK),
            )
        )
        update = (self.server.connection_window - _DEFAULT_WINDOW).to_bytes(4, "big")
        self.write(frame(_SETTINGS, 0, 0, settings) + frame(_WINDOW_UPDATE, 0, 0, update))
        if self.server.closing:
            self.go_away()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.reset()
        self.server.check_idle()

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def pause_writing(self) -> None:
        """The peer does not read what we send: read nothing more of it (a PING or
        SETTINGS flood would be answered into memory) and hold the handlers' writes."""
        self.paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        w = self._writable
        if w is not None and not w.done():
            w.set_result(None)
        self._writable = None

    async def writable(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()
        await asyncio.shield(self._writable)

    def abort(self) -> None:
        """Closes at once, whatever is left unsent (a peer that reads nothing would keep
        a closing transport open)."""
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buf = _whole(self._pending, data, self._needed)
        if buf is None:
            return
        try:
            if not self._preface:
                if len(buf) < len(PREFACE):
                    if not PREFACE.startswith(buf):
                        raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 preface")
                    self._keep(buf, len(PREFACE))
                    return
                if not buf.startswith(PREFACE):
                    raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 preface")
                self._preface = True
                buf = buf[len(PREFACE) :]
            pos = 0
            n = len(buf)
            while n - pos >= 9:
                length = int.from_bytes(buf[pos : pos + 3], "big")
                if length > _OUR_MAX_FRAME:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
                end = pos + 9 + length
                if end > n:
                    break
                kind = buf[pos + 3]
                flags = buf[pos + 4]
                sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                payload = buf[pos + 9 : end]
                pos = end
                if self._continuing is not None and kind != _CONTINUATION:
                    raise _ConnectionError(PROTOCOL_ERROR, "a header block was interrupted")
                if not self._settings_seen:
                    if kind != _SETTINGS or flags & _ACK:
                        raise _ConnectionError(PROTOCOL_ERROR, "the first frame is not SETTINGS")
                    self._settings_seen = True
                if kind == _DATA:
                    self._on_data(sid, flags, payload)
                elif kind == _HEADERS:
                    self._on_headers(sid, flags, payload)
                elif kind == _WINDOW_UPDATE:
                    self._on_window_update(sid, payload)
                elif kind == _RST_STREAM:
                    if len(payload) != 4:
                        raise _ConnectionError(FRAME_SIZE_ERROR, "a malformed RST_STREAM")
                    if not sid or sid > self._last_stream:
                        raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
                    stream = self.streams.pop(sid, None)
                    if stream is not None:
                        stream.reset()
                        self.server.check_idle()
                elif kind == _SETTINGS:
                    self._on_settings(sid, flags, payload)
                elif kind == _PING:
                    if sid:
                        raise _ConnectionError(PROTOCOL_ERROR, "PING on a stream")
                    if len(payload) != 8:
                        raise _ConnectionError(FRAME_SIZE_ERROR, "a malformed PING")
                    if not flags & _ACK:
                        self.write(frame(_PING, _ACK, 0, payload))
                elif kind == _CONTINUATION:
                    self._on_continuation(sid, flags, payload)
                elif kind == _GOAWAY:
                    self.going_away = True
                elif kind == _PUSH_PROMISE:
                    raise _ConnectionError(PROTOCOL_ERROR, "a client sent PUSH_PROMISE")
                elif kind == _PRIORITY and len(payload) != 5:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "a malformed PRIORITY")
                # Unknown types: ignored (§5.5).
            if pos < n:
                rest = buf[pos:] if pos else buf
                self._keep(rest, 9 + int.from_bytes(rest[:3], "big") if len(rest) >= 9 else 9)
        except _ConnectionError as exc:
            self._fail(exc.code, str(exc))

    def _keep(self, rest: bytes, needed: int) -> None:
        self._pending += rest
        self._needed = needed

    # -- frames -------------------------------------------------------------------
    def _on_data(self, sid: int, flags: int, payload: bytes) -> None:
        """Flow control: the connection's window is given back as bytes arrive (a stream
        holds them), a stream's as its handler reads its messages, so what a stream can
        make a worker hold is bounded by its window (`H2GrpcServer.stream_window`)."""
        if not sid:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        length = len(payload)
        self._recv_left -= length
        if self._recv_left < 0:
            raise _ConnectionError(FLOW_CONTROL_ERROR, "DATA past the connection window")
        self._release(length)
        if flags & _PADDED:
            payload = _unpad(payload)
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self._last_stream:
                raise _ConnectionError(PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream we closed: what was in flight is dropped
        if stream._ended:
            self._close_stream(stream, INTERNAL, "DATA after the end of the stream", STREAM_CLOSED)
            return
        stream.recv_left -= length
        if stream.recv_left < 0:
            raise _ConnectionError(FLOW_CONTROL_ERROR, "DATA past a stream's window")
        if length != len(payload):
            stream.credit(length - len(payload))  # the padding
        if payload:
            try:
                stream.feed(payload)
            except _StreamError as exc:
                self._close_stream(stream, exc.status, str(exc))
                return
        if flags & _END_STREAM:
            if stream.partial:
                self._close_stream(stream, INTERNAL, "the stream ended inside a message")
                return
            stream.end()

    def _release(self, n: int) -> None:
        """``n`` bytes received on the connection: the peer may send them again."""
        self._released += n
        if self._released >= self.server.connection_window // 2:
            self.write(frame(_WINDOW_UPDATE, 0, 0, self._released.to_bytes(4, "big")))
            self._recv_left += self._released
            self._released = 0

    def _on_headers(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & _PADDED:
            payload = _unpad(payload)
        if flags & _PRIORITY_FLAG:
            payload = payload[5:]
        if len(payload) > _MAX_HEADER_BLOCK:
            raise _ConnectionError(PROTOCOL_ERROR, "a header block over 64 KiB")
        if flags & _END_HEADERS:
            self._on_header_block(sid, flags, payload)
        else:
            self._continuing = (sid, flags, bytearray(payload))

    def _on_continuation(self, sid: int, flags: int, payload: bytes) -> None:
        if self._continuing is None or self._continuing[0] != sid:
            raise _ConnectionError(PROTOCOL_ERROR, "an unexpected CONTINUATION")
        block = self._continuing[2]
        block += payload
        if len(block) > _MAX_HEADER_BLOCK:
            raise _ConnectionError(PROTOCOL_ERROR, "a header block over 64 KiB")
        if flags & _END_HEADERS:
            first_flags = self._continuing[1]
            self._continuing = None
            self._on_header_block(sid, first_flags, bytes(block))

    def _decode(self, block: bytes) -> list[tuple[str, str]]:
        cached = self._header_cache.get(block)
        if cached is not None:
            return cached
        try:
            headers = cast(list[tuple[str, str]], self._decoder.decode(block))
        except Exception as exc:
            raise _ConnectionError(COMPRESSION_ERROR, f"cannot decode headers: {exc}") from exc
        # With a table of size 0 (which our SETTINGS ask for) decoding depends on the
        # bytes only; before the peer has applied it, it may not.
        if self._decoder.header_table.maxsize == 0 and len(block) <= _CACHED_BLOCK_MAX:
            if len(self._header_cache) >= _HEADER_CACHE_SIZE:
                self._header_cache.clear()
            self._header_cache[block] = headers
        return headers

    def _on_header_block(self, sid: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)  # always: the decoder's state must follow
        stream = self.streams.get(sid)
        if stream is not None:  # trailers from the client: they must end its side
            if not flags & _END_STREAM or stream._ended:
                self._close_stream(stream, INTERNAL, "HEADERS inside a stream", STREAM_CLOSED)
            elif stream.partial:
                self._close_stream(stream, INTERNAL, "the stream ended inside a message")
            else:
                stream.end()
            return
        if sid <= self._last_stream or not sid & 1:
            if sid <= self._last_stream:  # a stream that is over
                self.write(frame(_RST_STREAM, 0, sid, STREAM_CLOSED.to_bytes(4, "big")))
                return
            raise _ConnectionError(PROTOCOL_ERROR, f"stream id {sid} from a client")
        self._last_stream = sid
        if self.going_away:
            self.write(frame(_RST_STREAM, 0, sid, REFUSED_STREAM.to_bytes(4, "big")))
            return
        if len(self.streams) >= self.server.max_streams:
            self.write(frame(_RST_STREAM, 0, sid, REFUSED_STREAM.to_bytes(4, "big")))
            return
        path = method_name = timeout = None
        for name, value in headers:
            if name == ":path":
                path = value
            elif name == ":method":
                method_name = value
            elif name == "grpc-timeout":
                timeout = value
        method = self.server.methods.get(path) if path is not None else None
        stream = Stream(self, sid, method or _UNKNOWN_METHOD)
        if method is None or method_name != "POST":
            stream._ended = bool(flags & _END_STREAM)
            shown = path if path is None or len(path) <= 200 else path[:200] + "…"
            stream.finish(UNIMPLEMENTED, f"unknown method {shown}")
            return
        self.streams[sid] = stream
        if flags & _END_STREAM:
            stream._ended = True
        stream.task = self.loop.create_task(self._run(stream, grpc_timeout(timeout)))

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not increment:
            raise _ConnectionError(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
        if not sid:
            self.send_window += increment
            if self.send_window > _MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "the connection window overflowed")
            for waiting in self.streams.values():
                waiting.wake_window()
            return
        stream = self.streams.get(sid)
        if stream is not None:
            stream.send_window += increment
            if stream.send_window > _MAX_WINDOW:
                self._close_stream(stream, INTERNAL, "the stream window overflowed")
                return
            stream.wake_window()

    def _on_settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & _ACK:
            if payload:
                raise _ConnectionError(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            # Our SETTINGS applied: from the next header block on, no table.
            self._decoder.max_allowed_table_size = 0
            return
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "a malformed SETTINGS")
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if key == _S_INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "an initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > _MAX_WINDOW:
                        raise _ConnectionError(FLOW_CONTROL_ERROR, "a stream window overflowed")
                    stream.wake_window()
            elif key == _S_MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise _ConnectionError(PROTOCOL_ERROR, "a max frame size out of range")
                self.peer_max_frame = value
        self.write(frame(_SETTINGS, _ACK, 0))

    # -- streams and the connection's end -----------------------------------------
    def _close_stream(
        self, stream: Stream, status: int, text: str, rst_code: int | None = None
    ) -> None:
        log.warning("ext_proc stream %d closed: %s", stream.id, text)
        stream.finish(status, text, rst_code)
        self.streams.pop(stream.id, None)
        stream.reset()
        self.server.check_idle()

    async def _run(self, stream: Stream, seconds: float | None) -> None:
        timer = None
        if seconds is not None:
            timer = self.loop.call_later(seconds, _expire, stream)
        try:
            await stream.method.handler(stream)
            stream.finish(OK)
        except asyncio.CancelledError:
            if stream.timed_out:
                stream.finish(DEADLINE_EXCEEDED, "deadline exceeded")
            elif not stream._reset:
                stream.finish(CANCELLED, "cancelled")
                raise
        except StreamClosed:
            pass
        except StatusError as exc:
            stream.finish(exc.status, exc.message)
        except Exception:
            log.exception("a gRPC handler failed")
            stream.finish(UNKNOWN, "the handler failed")
        finally:
            if timer is not None:
                timer.cancel()
            if self.streams.get(stream.id) is stream:
                del self.streams[stream.id]
            if self.going_away and not self.streams and self.transport is not None:
                self.transport.close()
            self.server.check_idle()

    def go_away(self, code: int = NO_ERROR, text: str = "") -> None:
        """GOAWAY: no stream after the last one we saw; the connection closes once its
        streams are done (at once for an error)."""
        if self.transport is None:
            return
        if not self._goaway_sent or code != NO_ERROR:
            self._goaway_sent = True
            payload = self._last_stream.to_bytes(4, "big") + code.to_bytes(4, "big")
            self.write(frame(_GOAWAY, 0, 0, payload + text.encode()[:256]))
        self.going_away = True
        if code != NO_ERROR:
            # The GOAWAY is written (or the peer reads nothing): its streams end now.
            streams = list(self.streams.values())
            self.streams.clear()
            for stream in streams:
                stream.reset()
            self.abort()
        elif not self.streams:
            self.transport.close()

    def _fail(self, code: int, text: str) -> None:
        log.warning("ext_proc connection closed: %s", text)
        self.go_away(code, text)


def _whole(pending: bytearray, data: bytes, needed: int) -> bytes | None:
    """``data`` after what was kept of an earlier read (emptied), or None while fewer
    than ``needed`` bytes are here: a frame or a message is parsed once it is whole."""
    if not pending:
        return data
    pending += data
    if len(pending) < needed:
        return None
    buf = bytes(pending)
    pending.clear()
    return buf


def _expire(stream: Stream) -> None:
    stream.timed_out = True
    if stream.task is not None:
        stream.task.cancel()


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise _ConnectionError(PROTOCOL_ERROR, "a padded frame without its pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - pad]


async def _no_handler(stream: Stream) -> None:  # pragma: no cover - never run
    return None


_UNKNOWN_METHOD: Final = Method(_no_handler, bytes, bytes)


class H2GrpcServer:
    """Listens on one TCP port and runs a handler per RPC."""

    def __init__(
        self,
        methods: dict[str, Method],
        *,
        max_message_bytes: int = 4 * 1024 * 1024,
        max_streams: int = 1024,
    ) -> None:
        if not 0 < max_message_bytes <= MAX_MESSAGE_LIMIT:
            raise ValueError(f"max_message_bytes must be 1 to {MAX_MESSAGE_LIMIT}")
        self.methods = methods
        self.max_message_bytes = max_message_bytes
        self.max_streams = max_streams
        # A stream's receive window is twice the largest message, given back as its
        # handler reads: the peer can always send a whole message, and a stream holds at
        # most two. The connection's is given back as bytes arrive (at least 16 MiB).
        self.stream_window = max(_DEFAULT_WINDOW, 2 * (max_message_bytes + 5))
        self.connection_window = min(_MAX_WINDOW, max(2 * self.stream_window, 1 << 24))
        self.closing = False
        self.connections: set[H2Connection] = set()
        self._server: asyncio.Server | None = None
        self._idle: asyncio.Event | None = None

    async def start(self, host: str, port: int) -> int:
        """Listens; the port bound (``port`` 0 picks one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: H2Connection(self), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    def check_idle(self) -> None:
        if self._idle is not None and not any(c.streams for c in self.connections):
            self._idle.set()

    async def stop(self, grace: float) -> None:
        """Stops listening, sends GOAWAY, waits up to ``grace`` seconds for the streams
        to finish, then cancels what is left and closes every connection."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        self._idle = asyncio.Event()
        for conn in list(self.connections):
            conn.go_away()
        self.check_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        tasks = []
        for conn in list(self.connections):
            for stream in list(conn.streams.values()):
                if stream.task is not None and not stream.task.done():
                    stream.task.cancel()
                    tasks.append(stream.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for conn in list(self.connections):
            conn.abort()  # what could be sent is; a peer that reads nothing waits no more
        await asyncio.sleep(0)  # the transports report their end
        if self._server is not None:
            await self._server.wait_closed()
