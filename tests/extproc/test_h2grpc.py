"""The ext_proc port's own gRPC server (extproc.h2grpc) against two independent
clients: grpcio's (what the tests of the product use) and the h2 library's, frame by
frame, for what grpcio never sends (padding, CONTINUATION, split frames, broken rules).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sidecar.extproc import h2grpc
from policy_sidecar.extproc.health import CHECK_PATH, Health
from policy_sidecar.extproc.server import PROCESS_PATH

PATH = PROCESS_PATH


def body_message(body: bytes, end: bool = True) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=end))


def echo_answer(msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
    """The body back as a body mutation: the answer is as big as the message."""
    answer = pb.ProcessingResponse(request_body=pb.BodyResponse())
    answer.request_body.response.body_mutation.body = msg.request_body.body
    return answer


class Recorder:
    """A handler that echoes every message and remembers how its stream ended."""

    def __init__(self) -> None:
        self.seen: list[pb.ProcessingRequest] = []
        self.ended: list[str] = []
        self.started = asyncio.Event()

    async def echo(self, stream: h2grpc.Stream) -> None:
        self.started.set()
        try:
            while True:
                msg = await stream.read()
                if msg is h2grpc.EOF:
                    self.ended.append("eof")
                    return
                self.seen.append(msg)
                await stream.write(echo_answer(msg))
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        except h2grpc.StreamClosed:
            self.ended.append("closed")
            raise


def method(handler: Callable[[h2grpc.Stream], Any]) -> h2grpc.Method:
    return h2grpc.Method(
        handler, pb.ProcessingRequest.FromString, pb.ProcessingResponse.SerializeToString
    )


@contextlib.asynccontextmanager
async def serving(
    methods: dict[str, h2grpc.Method], **kw: Any
) -> AsyncIterator[tuple[h2grpc.H2GrpcServer, int]]:
    server = h2grpc.H2GrpcServer(methods, **kw)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.stop(0.5)


# -- grpcio's client ----------------------------------------------------------------


async def test_a_stream_of_messages_round_trips_and_ends_with_ok() -> None:
    rec = Recorder()
    async with (
        serving({PATH: method(rec.echo)}) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        for i in range(5):
            await call.write(body_message(b"x" * i, end=False))
            answer = await call.read()
            assert answer.request_body.response.body_mutation.body == b"x" * i
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    assert [m.request_body.body for m in rec.seen] == [b"x" * i for i in range(5)]
    assert rec.ended == ["eof"]


async def test_messages_larger_than_every_window_and_frame_pass_both_ways() -> None:
    """3 MiB each way: many DATA frames, and the answer waits for the client's
    WINDOW_UPDATEs (grpcio starts with a 64 KiB window)."""
    rec = Recorder()
    big = bytes(range(256)) * (3 * 4096)
    async with (
        serving({PATH: method(rec.echo)}) as (_, port),
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 8 << 20)]
        ) as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        for _ in range(6):  # 18 MiB each way: more than the connection's window
            await call.write(body_message(big, end=False))
            answer = await call.read()
            assert answer.request_body.response.body_mutation.body == big
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


async def test_a_message_over_the_limit_is_resource_exhausted() -> None:
    rec = Recorder()
    async with (
        serving({PATH: method(rec.echo)}, max_message_bytes=1000) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b"y" * 2000))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over 1000" in (err.value.details() or "")
    assert rec.seen == []


async def test_an_unknown_method_is_unimplemented_and_the_connection_serves_on() -> None:
    rec = Recorder()
    async with (
        serving({PATH: method(rec.echo)}) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "/grpc.health.v1.Health/Check" in (err.value.details() or "")
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b"after"))
        assert (await call.read()).request_body.response.body_mutation.body == b"after"


async def test_a_failing_handler_ends_its_stream_with_unknown_and_a_status_error_with_its_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom(stream: h2grpc.Stream) -> None:
        await stream.read()
        raise RuntimeError("secret detail")

    async def refuse(stream: h2grpc.Stream) -> None:
        await stream.read()
        raise h2grpc.StatusError(7, "no entry: é%")

    async with (
        serving({PATH: method(boom), "/x.Y/Refuse": method(refuse)}) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b""))
        assert await call.code() == grpc.StatusCode.UNKNOWN
        assert "secret detail" not in (await call.details())
        refuse_call = channel.stream_stream(
            "/x.Y/Refuse",
            request_serializer=pb.ProcessingRequest.SerializeToString,
            response_deserializer=pb.ProcessingResponse.FromString,
        )()
        await refuse_call.write(body_message(b""))
        assert await refuse_call.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await refuse_call.details() == "no entry: é%"
    assert "a gRPC handler failed" in caplog.text


async def test_a_client_that_cancels_cancels_the_handler() -> None:
    rec = Recorder()

    async def stuck(stream: h2grpc.Stream) -> None:
        rec.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            rec.ended.append("cancelled")
            raise

    async with (
        serving({PATH: method(stuck)}) as (server, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b""))
        await asyncio.wait_for(rec.started.wait(), 5)
        call.cancel()
        for _ in range(100):
            if rec.ended:
                break
            await asyncio.sleep(0.02)
        assert rec.ended == ["cancelled"]
        assert not any(c.streams for c in server.connections)


async def test_grpc_timeout_cancels_the_handler_with_deadline_exceeded() -> None:
    rec = Recorder()

    async def slow(stream: h2grpc.Stream) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            rec.ended.append("cancelled")
            raise

    async with serving({PATH: method(slow)}) as (_, port):
        reply = await raw_call(port, [body_message(b"")], extra_headers=[("grpc-timeout", "50m")])
    assert reply.trailers["grpc-status"] == "4"
    assert rec.ended == ["cancelled"]


async def test_health_check_follows_the_serving_state() -> None:
    health = Health()
    async with (
        serving({CHECK_PATH: health.method()}) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        health.serving = True
        reply = await stub.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="other"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stop_lets_started_streams_finish_and_refuses_new_connections() -> None:
    rec = Recorder()
    server = h2grpc.H2GrpcServer({PATH: method(rec.echo)})
    port = await server.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b"one", end=False))
        await call.read()
        stopping = asyncio.create_task(server.stop(5))
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        # The stream started before the stop goes on to its end.
        await call.write(body_message(b"two"))
        assert (await call.read()).request_body.response.body_mutation.body == b"two"
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, 5)
    assert rec.ended == ["eof"]


async def test_stop_cancels_what_outlives_the_grace_period() -> None:
    rec = Recorder()
    server = h2grpc.H2GrpcServer({PATH: method(rec.echo)})
    port = await server.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b"one", end=False))
        await call.read()
        await asyncio.wait_for(server.stop(0.2), 5)
        assert rec.ended == ["cancelled"]
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()


# -- the h2 library's client, frame by frame ------------------------------------------


class RawReply:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.trailers: dict[str, str] = {}
        self.data = b""
        self.reset: int | None = None

    def messages(self) -> list[pb.ProcessingResponse]:
        out, buf = [], self.data
        while buf:
            assert buf[0] == 0
            n = int.from_bytes(buf[1:5], "big")
            out.append(pb.ProcessingResponse.FromString(buf[5 : 5 + n]))
            buf = buf[5 + n :]
        return out


def grpc_frame(msg: Any) -> bytes:
    data = msg.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


def client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    return conn


def request_headers(path: str = PATH) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "ext_proc"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


async def exchange(
    port: int,
    conn: h2.connection.H2Connection,
    send: list[bytes],
    *,
    until: Callable[[dict[int, RawReply]], bool],
    chunk: int | None = None,
) -> dict[int, RawReply]:
    """Writes ``send`` (in ``chunk``-byte writes when given), then reads until ``until``
    holds for the replies, acknowledging SETTINGS and data as a client must."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies: dict[int, RawReply] = {}
    try:
        data = b"".join(send)
        if chunk:
            for i in range(0, len(data), chunk):
                writer.write(data[i : i + chunk])
                await writer.drain()
        else:
            writer.write(data)
        while not until(replies):
            got = await asyncio.wait_for(reader.read(65536), 5)
            if not got:
                break
            for event in conn.receive_data(got):
                sid = getattr(event, "stream_id", 0)
                reply = replies.setdefault(sid, RawReply()) if sid else None
                if isinstance(event, h2.events.ResponseReceived):
                    assert reply is not None
                    reply.headers = dict(event.headers)  # type: ignore[arg-type]
                    if "grpc-status" in reply.headers:  # Trailers-Only
                        reply.trailers = reply.headers
                elif isinstance(event, h2.events.TrailersReceived):
                    assert reply is not None
                    reply.trailers = dict(event.headers)  # type: ignore[arg-type]
                elif isinstance(event, h2.events.DataReceived):
                    assert reply is not None
                    reply.data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, h2.events.StreamReset):
                    assert reply is not None
                    reply.reset = event.error_code
                elif isinstance(event, h2.events.ConnectionTerminated):
                    replies.setdefault(0, RawReply()).reset = event.error_code
            out = conn.data_to_send()
            if out:
                writer.write(out)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return replies


async def raw_call(
    port: int, messages: list[Any], extra_headers: list[tuple[str, str]] | None = None
) -> RawReply:
    conn = client()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers() + (extra_headers or []))
    conn.send_data(sid, b"".join(grpc_frame(m) for m in messages))
    replies = await exchange(
        port, conn, [conn.data_to_send()], until=lambda r: bool(r.get(sid, RawReply()).trailers)
    )
    return replies[sid]


async def test_frames_split_into_one_byte_writes_still_make_their_messages() -> None:
    rec = Recorder()
    conn = client()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers())
    conn.send_data(sid, grpc_frame(body_message(b"a")) + grpc_frame(body_message(b"bc")))
    conn.end_stream(sid)
    async with serving({PATH: method(rec.echo)}) as (_, port):
        replies = await exchange(
            port,
            conn,
            [conn.data_to_send()],
            until=lambda r: bool(r.get(1, RawReply()).trailers),
            chunk=1,
        )
    reply = replies[sid]
    assert reply.headers[":status"] == "200"
    assert reply.trailers["grpc-status"] == "0"
    assert [m.request_body.response.body_mutation.body for m in reply.messages()] == [b"a", b"bc"]
    assert rec.ended == ["eof"]


async def test_padding_priority_and_continuation_are_understood() -> None:
    """HEADERS padded with the PRIORITY flag and split over CONTINUATION frames,
    DATA padded: built by hand, as the h2 library would not split them so."""
    rec = Recorder()
    enc = hpack.Encoder()
    block = enc.encode(request_headers())
    sid = 1
    pad = 7
    headers_payload = bytes((pad,)) + b"\x00\x00\x00\x00\x10" + block[:5] + b"\x00" * pad
    msg = grpc_frame(body_message(b"padded"))
    send = [
        h2grpc.PREFACE,
        h2grpc.frame(4, 0, 0),  # SETTINGS
        h2grpc.frame(1, 0x8 | 0x20, sid, headers_payload),  # HEADERS, no END_HEADERS
        h2grpc.frame(9, 0, sid, block[5:9]),  # CONTINUATION
        h2grpc.frame(9, 0x4, sid, block[9:]),  # CONTINUATION, END_HEADERS
        h2grpc.frame(0, 0x8 | 0x1, sid, bytes((3,)) + msg + b"\x00\x00\x00"),  # padded DATA
    ]
    conn = client()
    conn.send_headers(sid, request_headers())  # so that it expects the reply on stream 1
    conn.data_to_send()  # what it would send is replaced by ``send``
    async with serving({PATH: method(rec.echo)}) as (_, port):
        replies = await exchange(
            port, conn, send, until=lambda r: bool(r.get(1, RawReply()).trailers)
        )
    assert [m.request_body.response.body_mutation.body for m in replies[sid].messages()] == [
        b"padded"
    ]
    assert replies[sid].trailers["grpc-status"] == "0"


async def test_ping_is_answered_with_its_payload() -> None:
    conn = client()
    conn.ping(b"12345678")
    async with serving({}) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(conn.data_to_send())
        acks = []
        while not acks:
            got = await asyncio.wait_for(reader.read(65536), 5)
            assert got
            acks = [e for e in conn.receive_data(got) if isinstance(e, h2.events.PingAckReceived)]
        writer.close()
    assert acks[0].ping_data == b"12345678"


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([h2grpc.frame(0, 0, 0, b"x")], h2grpc.PROTOCOL_ERROR),  # DATA on stream 0
        ([h2grpc.frame(6, 0, 0, b"short")], h2grpc.FRAME_SIZE_ERROR),  # PING not 8 bytes
        ([h2grpc.frame(4, 0, 0, b"12345")], h2grpc.FRAME_SIZE_ERROR),  # SETTINGS not 6·n
        ([h2grpc.frame(4, 0, 0, b"\x00\x05\x00\x00\x00\x01")], h2grpc.PROTOCOL_ERROR),
        ([h2grpc.frame(1, 0x4, 2, b"\x82")], h2grpc.PROTOCOL_ERROR),  # an even stream id
        ([h2grpc.frame(1, 0x4, 1, b"\xff\xff\xff\xff")], h2grpc.COMPRESSION_ERROR),
        ([h2grpc.frame(1, 0, 1, b"\x82"), h2grpc.frame(0, 0, 1, b"")], h2grpc.PROTOCOL_ERROR),
        ([h2grpc.frame(5, 0x4, 1, b"\x00\x00\x00\x02")], h2grpc.PROTOCOL_ERROR),  # PUSH_PROMISE
        ([b"\x10\x00\x01" + b"\x00" * 6], h2grpc.FRAME_SIZE_ERROR),  # 1 MiB + 1 frame
        ([h2grpc.frame(1, 0x4, 1, b"\x20" * 70_000)], h2grpc.PROTOCOL_ERROR),  # > 64 KiB
        ([h2grpc.frame(6, 0, 1, b"12345678")], h2grpc.PROTOCOL_ERROR),  # PING on a stream
        ([h2grpc.frame(3, 0, 0, b"\x00\x00\x00\x08")], h2grpc.PROTOCOL_ERROR),  # RST on 0
        ([h2grpc.frame(3, 0, 9, b"\x00\x00\x00\x08")], h2grpc.PROTOCOL_ERROR),  # RST, idle
        ([h2grpc.frame(3, 0, 0, b"\x08")], h2grpc.FRAME_SIZE_ERROR),  # RST not 4 bytes
        ([h2grpc.frame(4, 0x1, 0, b"\x00" * 6)], h2grpc.FRAME_SIZE_ERROR),  # ACK + payload
        ([h2grpc.frame(2, 0, 1, b"\x00")], h2grpc.FRAME_SIZE_ERROR),  # PRIORITY not 5 bytes
        ([h2grpc.frame(8, 0, 0, b"\x00\x00\x00\x00")], h2grpc.PROTOCOL_ERROR),  # WU of 0
    ],
)
async def test_a_broken_rule_ends_the_connection_with_goaway_and_its_code(
    frames: list[bytes], code: int
) -> None:
    conn = client()
    send = [conn.data_to_send(), *frames]
    async with serving({}) as (_, port):
        replies = await exchange(port, conn, send, until=lambda r: 0 in r)
    assert replies[0].reset == code


async def test_not_http2_is_closed_without_a_reply() -> None:
    async with serving({}) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            got += chunk
        writer.close()
    # Our SETTINGS went out on accept; nothing answers the HTTP/1.1 request.
    assert b"HTTP/1.1" not in got


async def test_compressed_messages_are_unimplemented() -> None:
    rec = Recorder()
    conn = client()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers())
    conn.send_data(sid, b"\x01" + grpc_frame(body_message(b"z"))[1:])
    async with serving({PATH: method(rec.echo)}) as (_, port):
        replies = await exchange(
            port, conn, [conn.data_to_send()], until=lambda r: bool(r.get(1, RawReply()).trailers)
        )
    assert replies[sid].trailers["grpc-status"] == "12"
    assert rec.seen == []


async def test_streams_over_the_limit_are_refused_and_the_rest_served() -> None:
    release = asyncio.Event()

    async def hold(stream: h2grpc.Stream) -> None:
        await stream.read()
        await release.wait()
        await stream.write(pb.ProcessingResponse())

    conn = client()
    sids = []
    for _ in range(3):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers())
        conn.send_data(sid, grpc_frame(body_message(b"")))
        sids.append(sid)
    async with serving({PATH: method(hold)}, max_streams=2) as (_, port):
        asyncio.get_running_loop().call_later(0.3, release.set)
        replies = await exchange(
            port,
            conn,
            [conn.data_to_send()],
            until=lambda r: all(r.get(s, RawReply()).trailers for s in sids[:2]),
        )
    assert replies[sids[2]].reset == h2grpc.REFUSED_STREAM
    assert [replies[s].trailers["grpc-status"] for s in sids[:2]] == ["0", "0"]


async def test_the_header_table_is_off_once_settled_and_routing_stays_right() -> None:
    """After our SETTINGS (table size 0) are acknowledged the decoded blocks are
    remembered by their bytes: streams alternating two paths must each reach their own
    method, many times over."""
    calls: dict[str, int] = {"a": 0, "b": 0}

    def counting(name: str) -> Callable[[h2grpc.Stream], Any]:
        async def handler(stream: h2grpc.Stream) -> None:
            await stream.read()
            calls[name] += 1
            await stream.write(pb.ProcessingResponse())

        return handler

    async with (
        serving({"/t.S/A": method(counting("a")), "/t.S/B": method(counting("b"))}) as (
            server,
            port,
        ),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        for i in range(20):
            path = "/t.S/A" if i % 2 else "/t.S/B"
            call = channel.stream_stream(
                path,
                request_serializer=pb.ProcessingRequest.SerializeToString,
                response_deserializer=pb.ProcessingResponse.FromString,
            )()
            await call.write(body_message(b""))
            await call.read()
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
        (conn,) = server.connections
        assert conn._decoder.header_table.maxsize == 0
        assert conn._header_cache  # blocks remembered
    assert calls == {"a": 10, "b": 10}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bodies=st.lists(st.binary(max_size=3000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=10),
)
def test_messages_survive_any_cut_of_the_data(bodies: list[bytes], cuts: list[int]) -> None:
    """The gRPC messages of a stream cut into DATA frames at arbitrary offsets arrive
    whole and in order."""
    stream_bytes = b"".join(grpc_frame(body_message(b)) for b in bodies)

    async def run() -> list[bytes]:
        rec = Recorder()
        conn = client()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers())
        pos = 0
        for cut in sorted(set(cuts)):
            if pos < cut < len(stream_bytes):
                conn.send_data(sid, stream_bytes[pos:cut])
                pos = cut
        conn.send_data(sid, stream_bytes[pos:], end_stream=True)
        async with serving({PATH: method(rec.echo)}) as (_, port):
            await exchange(
                port,
                conn,
                [conn.data_to_send()],
                until=lambda r: bool(r.get(1, RawReply()).trailers),
            )
        return [m.request_body.body for m in rec.seen]

    assert asyncio.run(run()) == bodies


def test_grpc_timeout_values() -> None:
    assert h2grpc.grpc_timeout("50m") == pytest.approx(0.05)
    assert h2grpc.grpc_timeout("2S") == 2.0
    assert h2grpc.grpc_timeout("1H") == 3600.0
    assert h2grpc.grpc_timeout("100u") == pytest.approx(1e-4)
    for bad in (None, "", "5", "m", "123456789S", "1.5S", "-1S", "5x"):
        assert h2grpc.grpc_timeout(bad) is None


def test_percent_encoding_of_grpc_message() -> None:
    assert h2grpc.percent_encode("ok text") == b"ok text"
    assert h2grpc.percent_encode("50%\n") == b"50%25%0A"
    assert h2grpc.percent_encode("é") == b"%C3%A9"


async def test_flow_control_gives_the_windows_back_as_messages_are_consumed() -> None:
    """Far more than both receive windows, in small messages on one stream: the peer
    may go on only because we send WINDOW_UPDATEs as its messages are consumed."""
    rec = Recorder()
    async with (
        serving({PATH: method(rec.echo)}, max_message_bytes=1000) as (server, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        assert server.stream_window == 65535
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        for i in range(300):  # 300 x ~900 bytes: four stream windows
            await call.write(body_message(bytes([i % 256]) * 880, end=False))
            await call.read()
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    assert len(rec.seen) == 300


async def test_a_peer_past_a_stream_window_is_cut_off() -> None:
    conn = client()
    send = [
        conn.data_to_send(),
        h2grpc.frame(1, 0x4, 1, hpack.Encoder().encode(request_headers())),
        h2grpc.frame(0, 0, 1, b"\x00\x00\x00\x03\xe7" + b"z" * 70000),  # 65,535 allowed
    ]
    async with serving({PATH: method(Recorder().echo)}, max_message_bytes=1000) as (_, port):
        replies = await exchange(port, conn, send, until=lambda r: 0 in r)
    assert replies[0].reset == h2grpc.FLOW_CONTROL_ERROR


async def test_what_a_stream_holds_is_bounded_by_its_window() -> None:
    """A handler that reads nothing: the peer's messages are given back to it only as
    they are read, so past the stream's window more is a flow-control error, not more
    memory (a client that keeps the rules waits instead)."""

    async def idle(stream: h2grpc.Stream) -> None:
        await asyncio.sleep(30)

    async with serving({PATH: method(idle)}, max_message_bytes=1000) as (server, port):
        assert server.stream_window == 65535
        conn = client()
        message = grpc_frame(body_message(b"m" * 900))
        send = [
            conn.data_to_send(),
            h2grpc.frame(1, 0x4, 1, hpack.Encoder().encode(request_headers())),
        ]
        send += [h2grpc.frame(0, 0, 1, message)] * 80  # 80 x ~906 bytes > 65,535
        replies = await exchange(port, conn, send, until=lambda r: 0 in r)
    assert replies[0].reset == h2grpc.FLOW_CONTROL_ERROR


async def test_the_first_frame_must_be_settings() -> None:
    conn = client()
    conn.data_to_send()
    send = [h2grpc.PREFACE, h2grpc.frame(6, 0, 0, b"12345678")]
    async with serving({}) as (_, port):
        replies = await exchange(port, conn, send, until=lambda r: 0 in r)
    assert replies[0].reset == h2grpc.PROTOCOL_ERROR


async def test_a_stream_that_ends_inside_a_message_is_an_internal_error() -> None:
    rec = Recorder()
    conn = client()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers())
    conn.send_data(
        sid, grpc_frame(body_message(b"whole")) + b"\x00\x00\x00\x00\x09ab", end_stream=True
    )
    async with serving({PATH: method(rec.echo)}) as (server, port):
        replies = await exchange(
            port, conn, [conn.data_to_send()], until=lambda r: bool(r.get(1, RawReply()).trailers)
        )
        await asyncio.sleep(0.05)
        assert not any(c.streams for c in server.connections)
    assert replies[sid].trailers["grpc-status"] == "13"
    assert "inside a message" in replies[sid].trailers["grpc-message"]


async def test_data_after_the_end_of_a_stream_is_not_delivered() -> None:
    rec = Recorder()
    conn = client()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers())
    conn.send_data(sid, grpc_frame(body_message(b"A")), end_stream=True)
    send = [conn.data_to_send(), h2grpc.frame(0, 0, sid, grpc_frame(body_message(b"B")))]
    async with serving({PATH: method(rec.echo)}) as (_, port):
        replies = await exchange(
            port, conn, send, until=lambda r: bool(r.get(1, RawReply()).trailers)
        )
    assert replies[sid].trailers["grpc-status"] == "13"
    assert replies[sid].trailers["grpc-message"] == "DATA after the end of the stream"
    assert b"B" not in [m.request_body.body for m in rec.seen]


async def test_messages_up_to_the_limit_never_stall_a_stream_or_a_connection() -> None:
    """Half the limit then the limit on one stream, and six limit-sized calls at once on
    one connection: the windows are given back in time for each."""
    limit = 4 * 1024 * 1024
    rec = Recorder()
    async with (
        serving({PATH: method(rec.echo)}, max_message_bytes=limit) as (_, port),
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", 2 * limit),
                ("grpc.max_send_message_length", 2 * limit),
            ],
        ) as channel,
    ):
        stub = pb_grpc.ExternalProcessorStub(channel)
        call = stub.Process()
        for size in (limit // 2 - 100, limit - 100):
            await call.write(body_message(b"h" * size, end=False))
            answer = await asyncio.wait_for(call.read(), 20)
            assert len(answer.request_body.response.body_mutation.body) == size
        await call.done_writing()

        async def one(i: int) -> bytes:
            c = stub.Process()
            await c.write(body_message(bytes([i]) * (limit - 100)))
            answer = await c.read()
            await c.done_writing()
            return bytes(answer.request_body.response.body_mutation.body[:1])

        got = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(6))), 60)
    assert got == [bytes([i]) for i in range(6)]


async def test_a_long_status_message_is_cut_and_still_arrives() -> None:
    async def refuse(stream: h2grpc.Stream) -> None:
        await stream.read()
        raise h2grpc.StatusError(3, "é" * 5000)

    async with (
        serving({PATH: method(refuse)}) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        await call.write(body_message(b""))
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = await call.details()
        assert details.startswith("éé") and len(details) <= 512
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary("/" + "p" * 6000)(b"")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_peer_that_reads_nothing_is_not_answered_into_memory() -> None:
    """PINGs from a peer that never reads: once the socket is full the server stops
    reading it (asyncio's write flow control) instead of queueing PING ACKs."""
    import socket

    async with serving({}) as (server, port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        _, writer = await asyncio.open_connection(sock=sock)
        conn = client()
        writer.write(conn.data_to_send())
        pings = h2grpc.frame(6, 0, 0, b"12345678") * 4096
        for _ in range(200):  # 13 MB of PINGs
            writer.write(pings)
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except TimeoutError:
                break  # the server stopped reading us
        await asyncio.sleep(0.2)
        (served,) = server.connections
        assert served.paused
        assert served.transport is not None
        assert served.transport.get_write_buffer_size() < 1 << 20
        writer.transport.abort()


def test_the_message_limit_must_leave_room_for_two_in_a_window() -> None:
    assert h2grpc.H2GrpcServer({}, max_message_bytes=h2grpc.MAX_MESSAGE_LIMIT).stream_window < 2**31
    for bad in (0, h2grpc.MAX_MESSAGE_LIMIT + 1):
        with pytest.raises(ValueError, match="max_message_bytes"):
            h2grpc.H2GrpcServer({}, max_message_bytes=bad)
