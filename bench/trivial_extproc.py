"""The reference: a trivial Python ext_proc that answers CONTINUE to every message.

    python bench/trivial_extproc.py --ports 50061,50062

One process per port (like the sidecar's workers), grpc.aio on uvloop, no work at all:
what any Python ext_proc costs before it does anything. ``hot_path.py`` runs it behind
one ext_proc filter (request headers, buffered request body, response headers, streamed
response body: four messages for a JSON request, one more per stream chunk).

``--metadata FILE`` (a JSON object): the answer that ends the request path (the body's,
or the headers' when the request has no body) also sets it as the ``policy_sidecar``
dynamic metadata, with ``w`` the worker's port, as the policy filter's final answer
does: behind the product's full chain (the ``decided`` guard, the access log split by
worker) it then passes as the product would (bench/envoy_side.py).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import signal
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.protobuf import struct_pb2

_COMMON = pb.CommonResponse()


def answer(msg: pb.ProcessingRequest) -> pb.ProcessingResponse:
    kind = msg.WhichOneof("request")
    if kind == "request_headers":
        return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=_COMMON))
    if kind == "request_body":
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=_COMMON))
    if kind == "response_headers":
        return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=_COMMON))
    if kind == "response_body":
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=_COMMON))
    if kind == "request_trailers":
        return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
    return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


def final_answers(metadata: dict[str, Any]) -> dict[str, pb.ProcessingResponse]:
    """The body answer and the headers answer of a bodiless request, each carrying the
    metadata (built once)."""
    meta = struct_pb2.Struct()
    meta.update({"policy_sidecar": metadata})
    body = pb.ProcessingResponse(request_body=pb.BodyResponse(response=_COMMON))
    body.dynamic_metadata.CopyFrom(meta)
    headers = pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=_COMMON))
    headers.dynamic_metadata.CopyFrom(meta)
    return {"request_body": body, "request_headers": headers}


async def full_duplex(first: pb.ProcessingRequest, context: Any) -> None:
    """A request body in FULL_DUPLEX_STREAMED mode sent without waiting for the headers
    answer (``send_body_without_waiting_for_header_response``): read the headers and the
    whole body, then answer the headers (with the body's length, as a server that chose
    its mutations after reading the body would) and give the body back in one piece."""
    headers = pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=_COMMON))
    if first.request_headers.end_of_stream:
        await context.write(headers)
        return
    chunks = []
    while True:
        msg = await context.read()
        if msg is grpc.aio.EOF:
            return
        if msg.WhichOneof("request") != "request_body":
            break
        chunks.append(msg.request_body.body)
        if msg.request_body.end_of_stream:
            break
    whole = b"".join(chunks)
    length = headers.request_headers.response.header_mutation.set_headers.add()
    length.header.key = "content-length"
    length.header.raw_value = str(len(whole)).encode()
    await context.write(headers)
    answer = pb.ProcessingResponse(request_body=pb.BodyResponse(response=pb.CommonResponse()))
    streamed = answer.request_body.response.body_mutation.streamed_response
    streamed.body = whole
    streamed.end_of_stream = True
    await context.write(answer)
    while await context.read() is not grpc.aio.EOF:
        pass


class Trivial(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(
        self, finals: dict[str, pb.ProcessingResponse] | None = None, duplex: bool = False
    ) -> None:
        self._finals = finals
        self._duplex = duplex

    async def Process(self, request_iterator: Any, context: Any) -> None:
        if self._duplex:
            first = await context.read()
            if first is not grpc.aio.EOF:
                await full_duplex(first, context)
            return
        finals = self._finals
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            if msg.observability_mode:
                continue
            if finals is not None:
                kind = msg.WhichOneof("request")
                if kind == "request_body" or (
                    kind == "request_headers" and msg.request_headers.end_of_stream
                ):
                    await context.write(finals[kind])
                    continue
            await context.write(answer(msg))


async def serve_h2(port: int, metadata: dict[str, Any] | None) -> None:
    from policy_sidecar.extproc import h2grpc
    from policy_sidecar.extproc.server import PROCESS_PATH

    finals = None if metadata is None else final_answers({**metadata, "w": str(port)})

    # The same servicer: h2grpc's Stream has grpc.aio's read/write and EOF.
    method = h2grpc.Method(
        functools.partial(Trivial(finals).Process, None),
        pb.ProcessingRequest.FromString,
        pb.ProcessingResponse.SerializeToString,
    )
    server = h2grpc.H2GrpcServer({PROCESS_PATH: method})
    await server.start("127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


async def serve(port: int, metadata: dict[str, Any] | None, duplex: bool = False) -> None:
    if os.environ.get("TRIVIAL_H2"):
        await serve_h2(port, metadata)
        return
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    finals = None if metadata is None else final_answers({**metadata, "w": str(port)})
    pb_grpc.add_ExternalProcessorServicer_to_server(Trivial(finals, duplex), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def worker(
    port: int, metadata: dict[str, Any] | None, cpu: int | None = None, duplex: bool = False
) -> None:
    import uvloop

    from policy_sidecar.wiring.affinity import pin_current_thread

    pin_current_thread(cpu)  # first: gRPC's threads inherit the CPU
    uvloop.run(serve(port, metadata, duplex))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--metadata", help="JSON file: the policy_sidecar metadata to set")
    parser.add_argument(
        "--pin", action="store_true", help="each process on a CPU of its own, as the sidecar"
    )
    parser.add_argument(
        "--full-duplex",
        action="store_true",
        help="answer the headers after reading the whole body (FULL_DUPLEX_STREAMED filters)",
    )
    parser.add_argument(
        "--h2", action="store_true", help="serve with policy_sidecar.extproc.h2grpc, not grpc.aio"
    )
    args = parser.parse_args()
    if args.h2:
        os.environ["TRIVIAL_H2"] = "1"  # the spawned workers inherit it
    ports = [int(p) for p in args.ports.split(",")]
    from policy_sidecar.wiring.affinity import allowed_cpus, worker_cpus

    cpus = worker_cpus(len(ports), "true" if args.pin else "false", allowed_cpus())
    metadata = None
    if args.metadata:
        with open(args.metadata) as f:
            metadata = json.load(f)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=worker, args=(p, metadata, cpu, args.full_duplex))
        for p, cpu in zip(ports, cpus, strict=True)
    ]
    for p in procs:
        p.start()

    def forward(_signum: int, _frame: object) -> None:
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
